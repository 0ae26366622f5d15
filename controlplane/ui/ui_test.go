package ui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

// The page and every file it names are served from the binary, each with
// its content type and the content security policy.
func TestConsoleFilesAreServed(t *testing.T) {
	h := Handler()
	resp := get(t, h, http.MethodGet, "/ui/")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	require.Equal(t, contentSecurityPolicy, resp.Header.Get("Content-Security-Policy"))
	require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	page, err := io.ReadAll(resp.Body)
	require.NoError(t, err)

	refs := regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(string(page), -1)
	require.GreaterOrEqual(t, len(refs), 8, "the page names its scripts, styles and icon")
	wantType := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
	for _, m := range refs {
		r := get(t, h, http.MethodGet, "/ui/"+m[1])
		require.Equal(t, http.StatusOK, r.StatusCode, m[1])
		ext := m[1][strings.LastIndexByte(m[1], '.'):]
		require.Equal(t, wantType[ext], r.Header.Get("Content-Type"), m[1])
		require.Equal(t, contentSecurityPolicy, r.Header.Get("Content-Security-Policy"), m[1])
	}
}

// Unknown files are 404, directories are not listed, and nothing but GET
// and HEAD is answered.
func TestConsoleRefusesTheRest(t *testing.T) {
	h := Handler()
	require.Equal(t, http.StatusNotFound, get(t, h, http.MethodGet, "/ui/nope.js").StatusCode)
	require.Equal(t, http.StatusNotFound, get(t, h, http.MethodGet, "/ui/assets/").StatusCode)
	r := get(t, h, http.MethodPost, "/ui/app.js")
	require.Equal(t, http.StatusMethodNotAllowed, r.StatusCode)
	require.Equal(t, "GET, HEAD", r.Header.Get("Allow"))
	require.Equal(t, http.StatusOK, get(t, h, http.MethodHead, "/ui/style.css").StatusCode)
}

// No page needs the internet: no file names another host (the SVG
// namespace is a name, not a fetch), and no script builds HTML from
// strings, the way data could turn into markup.
func TestConsoleNeedsNothingFromOutside(t *testing.T) {
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(\s*['"]?(https?:)?//`)
	n := 0
	require.NoError(t, fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := assets.ReadFile(path)
		require.NoError(t, err)
		text := strings.ReplaceAll(string(b), "http://www.w3.org/2000/svg", "")
		require.Empty(t, external.FindAllString(text, -1), "%s reaches outside", path)
		if strings.HasSuffix(path, ".js") {
			require.NotRegexp(t, `innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(`, text, path)
		}
		return nil
	}))
	require.GreaterOrEqual(t, n, 10)
}
