package controlplane

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// The console's browser tests drive Debian's chromium (installed by `make
// deps`) headless on loopback with chromedp.

// screenshotDir receives the screenshots of a test run; it is gitignored.
const screenshotDir = "../.screenshots/console"

// browserWait bounds each wait for the page: generous, for a busy machine.
const browserWait = 30 * time.Second

// chromiumPath finds the browser or skips the test, saying how to get it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("the console's browser tests need Chromium and found none on PATH: `make deps` installs Debian's chromium (apt-get install chromium)")
	return ""
}

// newBrowser starts one headless Chromium for the test, stopped at cleanup.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-gpu", true),
		// No proxy, so every request stays on loopback.
		chromedp.Flag("no-proxy-server", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	alloc, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	return alloc
}

// tab is one browser tab on the console, recording the errors its pages
// report: calls of console.error, uncaught exceptions and unhandled
// rejections, and the browser's own error entries (a script or style that
// fails to load, a content-security-policy violation). A 401 answer is left
// out: it is how the console learns that it must ask for a token.
type tab struct {
	t      *testing.T
	ctx    context.Context
	base   string
	mu     sync.Mutex
	errors []string
}

func openTab(t *testing.T, browser context.Context, base string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	tb := &tab{t: t, ctx: ctx, base: base}
	// Start the tab, then subscribe before the first page loads.
	require.NoError(t, chromedp.Do(ctx))
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type != chromedp.ConsoleError && !m.IsException() {
				continue
			}
			if m.Source == "network" && strings.Contains(m.Text, "status of 401") {
				continue
			}
			tb.mu.Lock()
			tb.errors = append(tb.errors, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
			tb.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		_ = chromedp.Cancel(cctx)
		cancel()
		<-done
	})
	return tb
}

// do runs actions with a deadline.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	require.NoError(tb.t, chromedp.Do(ctx, actions...), what)
}

// eval evaluates a JavaScript expression in the page.
func evalIn[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(tb.t, err, expr)
	return v
}

// waitJS waits until a JavaScript expression is true in the page, failing
// with what and the page's error banner when it never is.
func (tb *tab) waitJS(what, expr string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(browserWait)))
	if err != nil {
		banner := evalIn[string](tb, `document.getElementById('error') ? document.getElementById('error').textContent : ''`)
		tb.t.Fatalf("%s: %v (page error banner: %q; console errors: %v)", what, err, banner, tb.consoleErrors())
	}
}

// open loads the console in the tab, at a page ("overview", "config?node=x").
func (tb *tab) open(page string) {
	tb.t.Helper()
	tb.do("load the console", chromedp.Navigate(tb.base+"/ui/#/"+page))
}

// show moves to another page without reloading, as a click on the menu does.
func (tb *tab) show(page string) {
	tb.t.Helper()
	name, _, _ := strings.Cut(page, "?")
	evalIn[string](tb, fmt.Sprintf(`location.hash = %q`, "#/"+page))
	tb.waitJS("page "+page+" shown", fmt.Sprintf(`document.getElementById('main').getAttribute('data-page') === %q`, name))
}

// login signs in through the console's form.
func (tb *tab) login(token, wantRole string) {
	tb.t.Helper()
	tb.do("sign in",
		chromedp.WaitVisible(chromedp.CSS("#login-token")),
		chromedp.SendKeys(chromedp.CSS("#login-token"), token),
		chromedp.Click(chromedp.CSS("#login-submit")),
	)
	tb.waitJS("signed in as "+wantRole, fmt.Sprintf(`!!document.querySelector('#who .badge') && document.querySelector('#who .badge').textContent === %q`, wantRole))
}

func (tb *tab) consoleErrors() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.errors...)
}

// clean asserts that the page reported no error, to the console or in its
// own banner.
func (tb *tab) clean(page string) {
	tb.t.Helper()
	require.Empty(tb.t, tb.consoleErrors(), "console errors on %s", page)
	require.True(tb.t, evalIn[bool](tb, `document.getElementById('error').hidden`),
		"%s shows an error: %s", page, evalIn[string](tb, `document.getElementById('error').textContent`))
}

// screenshots saves the page at 1280 px and at 390 px (a phone), and
// checks that nothing is wider than the phone's screen but what scrolls in
// its own box. It returns the 1280 px image.
func (tb *tab) screenshots(name string) []byte {
	tb.t.Helper()
	require.NoError(tb.t, os.MkdirAll(screenshotDir, 0o755))
	var wide []byte
	for _, width := range []int64{1280, 390} {
		height := int64(900)
		if width == 390 {
			height = 844
		}
		tb.do("resize", chromedp.EmulateViewport(width, height))
		// Let the page lay itself out (and the chart redraw) at this size.
		tb.waitJS("laid out at "+fmt.Sprint(width), fmt.Sprintf(`document.documentElement.clientWidth === %d &&
			[...document.querySelectorAll('svg.chart')].every((c) => Math.abs(c.viewBox.baseVal.width - c.getBoundingClientRect().width) < 2)`, width))
		// Nothing is wider than the screen but what scrolls in its own box.
		fits := `document.documentElement.scrollWidth <= document.documentElement.clientWidth`
		if !evalIn[bool](tb, fits) {
			ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
			_, err := chromedp.Run(ctx, chromedp.Poll[bool](fits, chromedp.WithPollingInterval(50*time.Millisecond)))
			cancel()
			if err != nil {
				wide := evalIn[[]string](tb, `[...document.querySelectorAll('*')].filter((e) => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === 'visible').slice(-8).map((e) => e.tagName + '.' + e.className + ' sw=' + e.scrollWidth + ' cw=' + e.clientWidth + ' ' + e.textContent.slice(0, 40))`)
				tb.t.Fatalf("%s is wider than the %d px screen (%v px); the widest elements: %q", name, width,
					evalIn[float64](tb, `document.documentElement.scrollWidth - document.documentElement.clientWidth`), wide)
			}
		}
		ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
		img, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		require.NoError(tb.t, err)
		require.NoError(tb.t, os.WriteFile(filepath.Join(screenshotDir, fmt.Sprintf("%s-%d.png", name, width)), img, 0o644))
		if width == 1280 {
			wide = img
		}
	}
	tb.do("reset size", chromedp.EmulateViewport(1280, 900))
	return wide
}
