package policies

import (
	"regexp"
	"strconv"
	"strings"
)

// yamlParserProblems are the messages of yaml.v3's parser (parserc.go), as
// opposed to its scanner. The parser reports the 0-based line of its mark
// while the scanner reports a 1-based one (yaml.v3 decode.go, parser.fail,
// adds one for scanner errors only), so a parser error's line is one too low.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxViolation turns a yaml.v3 syntax error into a violation whose
// message names the 1-based line of the file ("malformed YAML: line 11: ...").
// The line stays in the message rather than in Line so that every reader of
// the error (the API's problem detail, the directory sync's status) shows it.
func syntaxViolation(err error) Violation {
	msg := err.Error()
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return Violation{Message: "malformed YAML: " + strings.TrimPrefix(msg, "yaml: ")}
	}
	line, _ := strconv.Atoi(m[1])
	if yamlParserProblems[m[2]] {
		line++
	}
	return Violation{Message: "malformed YAML: line " + strconv.Itoa(line) + ": " + m[2]}
}
