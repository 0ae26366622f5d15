package policies

import (
	"fmt"
	"strconv"
	"strings"
)

// Name syntax shared by validation.

// IsDNSLabel reports whether s is a DNS-1123 label: 1-63 characters of
// [a-z0-9-], starting and ending with a letter or digit.
func IsDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

func labelMessage(s string) string {
	if len(s) > 63 {
		return fmt.Sprintf("must be a DNS-1123 label of at most 63 characters (got %d)", len(s))
	}
	return fmt.Sprintf("must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit (got %q)", s)
}

// isHostname reports whether s is an RFC 1123 hostname (any case, an
// optional trailing dot).
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if !IsDNSLabel(strings.ToLower(part)) {
			return false
		}
	}
	return true
}

// isLabelName reports whether s is the name part of a label key or a label
// value: 1-63 characters of [A-Za-z0-9-_.], alphanumeric at both ends.
func isLabelName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && ((c != '-' && c != '_' && c != '.') || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// labelKeyMessage returns why key is not a valid label key ("tier",
// "example.com/tier"), or "".
func labelKeyMessage(key string) string {
	prefix, name, hasPrefix := strings.Cut(key, "/")
	if !hasPrefix {
		prefix, name = "", key
	}
	switch {
	case key == "":
		return "label key must not be empty"
	case hasPrefix && (len(prefix) > 253 || !isHostname(prefix) || strings.ToLower(prefix) != prefix || strings.HasSuffix(prefix, ".")):
		return fmt.Sprintf("invalid label key prefix %q: use a lower-case DNS subdomain such as example.com", prefix)
	case !isLabelName(name):
		return fmt.Sprintf("invalid label key %q: use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit, after an optional prefix/", key)
	}
	return ""
}

// isHeaderName reports whether s is an HTTP header name (an RFC 9110 token,
// or a pseudo-header such as ":authority").
func isHeaderName(s string) bool {
	s = strings.TrimPrefix(s, ":")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func isInstanceName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// fmtNum prints a number without a needless fraction: 50, 12.5.
func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
