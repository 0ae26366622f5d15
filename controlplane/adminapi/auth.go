package adminapi

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
)

// Role is what a bearer token may do with the admin API.
type Role int

// Roles, each allowing what the ones before it allow.
const (
	// RoleNone marks routes open to anyone: health and metrics.
	RoleNone Role = iota
	// RoleViewer may read every resource, status and config.
	RoleViewer
	// RoleEditor may also write: resources, applies, endpoint registrations,
	// experiments and the kill switch.
	RoleEditor
)

func (r Role) String() string {
	switch r {
	case RoleViewer:
		return "viewer"
	case RoleEditor:
		return "editor"
	}
	return "none"
}

// token is one line of a token file.
type token struct {
	hash [sha256.Size]byte // tokens are compared by hash, in constant time
	role Role
	name string // who the token stands for, in audit records
}

// Tokens is a parsed token file; nil means authentication is off.
type Tokens []token

// parseTokens reads a token file: one "TOKEN ROLE [NAME]" per line, roles
// viewer and editor, blank lines and "#" comments ignored. NAME is who the
// token stands for in experiment records; it defaults to "token@line N". Any
// malformed line is an error naming its line number.
func parseTokens(path string, data []byte) (Tokens, error) {
	var out Tokens
	seen := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = strings.TrimSpace(text[:i])
		}
		if text == "" {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) < 2 || len(fields) > 3 {
			return nil, fmt.Errorf("%s:%d: expected \"TOKEN ROLE [NAME]\", got %d field(s)", path, line, len(fields))
		}
		var role Role
		switch fields[1] {
		case "viewer":
			role = RoleViewer
		case "editor":
			role = RoleEditor
		default:
			return nil, fmt.Errorf("%s:%d: unknown role %q: use viewer or editor", path, line, fields[1])
		}
		if len(fields[0]) < 16 {
			return nil, fmt.Errorf("%s:%d: token too short (%d characters); use at least 16 random characters, e.g. from 'openssl rand -hex 32'", path, line, len(fields[0]))
		}
		h := sha256.Sum256([]byte(fields[0]))
		if prev, dup := seen[h]; dup {
			return nil, fmt.Errorf("%s:%d: the same token as line %d", path, line, prev)
		}
		seen[h] = line
		name := fmt.Sprintf("token@line%d", line)
		if len(fields) == 3 {
			name = fields[2]
		}
		out = append(out, token{hash: h, role: role, name: name})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", path, line+1, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no tokens: add lines \"TOKEN ROLE\" (roles viewer, editor)", path)
	}
	return out, nil
}

// LoadTokens reads --token-file; no file means authentication is off.
func LoadTokens(path string) (Tokens, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	ts, err := parseTokens(path, data)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	return ts, nil
}

// lookup finds a presented token; it compares against every token so the
// time taken does not tell which one matched.
func (ts Tokens) lookup(presented string) (token, bool) {
	h := sha256.Sum256([]byte(presented))
	var (
		found token
		ok    bool
	)
	for _, t := range ts {
		if subtle.ConstantTimeCompare(h[:], t.hash[:]) == 1 {
			found, ok = t, true
		}
	}
	return found, ok
}

type callerKey struct{}

// callerOf returns who made a request, for experiment records: the token's
// name, or "anonymous" when authentication is off.
func callerOf(ctx context.Context) string {
	if who, ok := ctx.Value(callerKey{}).(string); ok {
		return who
	}
	return "anonymous"
}

// authorize wraps a route's handler with its role check. Open routes and a
// server without a token file pass every request.
func (ts Tokens) authorize(need Role, h http.Handler) http.Handler {
	if need == RoleNone || ts == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, presented, _ := strings.Cut(auth, " ")
		presented = strings.TrimSpace(presented)
		if auth == "" {
			api.SendProblem(w, api.NewProblem(http.StatusUnauthorized, api.ProblemUnauthorized, "no credentials: send \"Authorization: Bearer TOKEN\" (bulwarkctl: --token or BULWARK_TOKEN)"))
			return
		}
		if !strings.EqualFold(scheme, "Bearer") || presented == "" {
			api.SendProblem(w, api.NewProblem(http.StatusUnauthorized, api.ProblemUnauthorized, "the Authorization header must be \"Bearer TOKEN\""))
			return
		}
		t, ok := ts.lookup(presented)
		if !ok {
			api.SendProblem(w, api.NewProblem(http.StatusUnauthorized, api.ProblemUnauthorized, "unknown token: check --token or BULWARK_TOKEN against the server's --token-file"))
			return
		}
		if t.role < need {
			api.SendProblem(w, api.NewProblem(http.StatusForbidden, api.ProblemForbidden, fmt.Sprintf("token %q has the role %s; %s %s needs the role %s", t.name, t.role, r.Method, r.URL.Path, need)))
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, t.name)))
	})
}
