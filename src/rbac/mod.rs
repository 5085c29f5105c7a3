//! RBAC rule breadth analysis and the built-in Kubernetes roles.
