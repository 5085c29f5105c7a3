// The reference for tests/go_regexp.rs: reads one JSON query a line on stdin,
// {"pattern": "...", "texts": ["...", ...]}, compiles the pattern with Go's regexp (as
// cosign does for matchOIDCIdentity) and answers one JSON line each, {"error": "..."} or
// {"matches": [true, false, ...]} (MatchString of each text).
package main

import (
	"bufio"
	"encoding/json"
	"os"
	"regexp"
)

type query struct {
	Pattern string   `json:"pattern"`
	Texts   []string `json:"texts"`
}

type answer struct {
	Error   string `json:"error,omitempty"`
	Matches []bool `json:"matches"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		var q query
		if err := json.Unmarshal(in.Bytes(), &q); err != nil {
			panic(err)
		}
		a := answer{Matches: []bool{}}
		re, err := regexp.Compile(q.Pattern)
		if err != nil {
			a.Error = err.Error()
		} else {
			for _, t := range q.Texts {
				a.Matches = append(a.Matches, re.MatchString(t))
			}
		}
		if err := enc.Encode(a); err != nil {
			panic(err)
		}
		// One answer per query, now: the test waits for it before it asks the next.
		if err := out.Flush(); err != nil {
			panic(err)
		}
	}
	if err := in.Err(); err != nil {
		panic(err)
	}
}
