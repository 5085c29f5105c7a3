module fluxgate.test/goregexp

go 1.21
