package controlplane

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/xdsserver"
	"github.com/bulwarkmesh/bulwark/xds/ir"
	"github.com/bulwarkmesh/bulwark/xds/translate"
)

var updateConsoleImage = flag.Bool("update-console-image", false, "write the Overview's 1280 px screenshot to docs/img/console-overview.png")

// consolePages are the console's pages, each with what shows it has drawn
// its data.
var consolePages = []struct{ name, ready string }{
	{"overview", `document.getElementById('rollout-state') && document.getElementById('ov-no-experiments') === null && !!document.querySelector('#ov-experiments li') && !!document.querySelector('#ov-replicas td') && !!document.querySelector('#ov-chart svg path.series') && rolloutHistory.length >= 3`},
	{"services", `!!document.querySelector('#svc-inventory table.effective') && !!document.querySelector('#svc-payments .badges .badge')`},
	{"proxies", `document.querySelectorAll('tr.proxy').length >= 2`},
	{"experiments", `!!document.querySelector('#exp-running section.experiment[data-name="payments-503"]')`},
	{"config", `!!document.querySelector('details.xds[data-type="routes"] details.resource')`},
}

// copyExamples copies examples/policies into a directory of the test's, to
// sync from.
func copyExamples(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "policies")
	require.NoError(t, os.CopyFS(dir, os.DirFS("../examples/policies")))
	return dir
}

// The console against a control plane serving the example mesh through
// its directory sync, with gRPC-Go's xDS clients connected and tokens
// required: every page loads without an error and is photographed at
// 1280 px and 390 px; a policy written through the API shows in Services
// and the Overview's rollout reaches "converged" without a reload; a
// client's NACK shows its error in Proxies; a viewer sees no kill switch
// (and the API refuses it); an editor's kill switch stops the running
// experiment and the page shows it gone.
func TestConsoleInBrowser(t *testing.T) {
	browser := newBrowser(t)
	h := newHarness(t, func(c *Config) {
		c.TokenFile = tokenFile(t)
		c.SyncDir, c.SyncResync = copyExamples(t), time.Second
	})
	editor, viewer := h.api(editorToken), h.api(viewerToken)
	eventually(t, 20*time.Second, func() error {
		st := decode[api.StatusReport](t, viewer.get("/v1/status"), http.StatusOK)
		if st.Sync == nil || !st.Sync.OK || st.Sync.Revision == 0 {
			return fmt.Errorf("the example mesh is not synced yet: %+v", st.Sync)
		}
		if r := viewer.get("/v1/experiments/payments-503"); r.code != http.StatusOK {
			return fmt.Errorf("payments-503 not running: %d", r.code)
		}
		return nil
	})
	// Proxyless clients of checkout (to inventory and payments) and of
	// frontend: the first call makes each fetch its config.
	inventory, checkoutNode := h.dial("checkout", "inventory")
	payments, _ := h.dial("checkout", "payments")
	front, _ := h.dial("frontend", "checkout")
	call(inventory, 2*time.Second, "x")
	call(payments, 2*time.Second, "x")
	call(front, 2*time.Second, "x")
	eventually(t, 20*time.Second, func() error {
		r := decode[api.StatusReport](t, viewer.get("/v1/status"), http.StatusOK).Rollout
		if r.Total < 3 || r.Converged != r.Total {
			return fmt.Errorf("rollout: %+v", r)
		}
		return nil
	})

	ed := openTab(t, browser, "http://"+h.cp.AdminAddr())
	ed.open("overview")
	ed.login(editorToken, "editor")

	t.Log("every page loads without errors")
	func() {
		for _, p := range consolePages {
			page := p.name
			if page == "config" {
				page = "config?node=" + checkoutNode
			}
			ed.show(page)
			ed.waitJS(p.name+" drew its data", p.ready)
			ed.screenshots(p.name)
			ed.clean(p.name)
		}
		// A group no proxy is connected for: Envoy's view of checkout.
		ed.show("config?service=checkout&flavor=envoy")
		ed.waitJS("Envoy's listener for checkout", `!!document.querySelector('#cfg-body code') && document.querySelector('#cfg-body code').textContent === 'envoy/checkout' &&
			document.querySelectorAll('details.xds[data-type="listeners"] details.resource').length === 1 &&
			document.querySelector('details.xds[data-type="listeners"] pre').textContent.includes('15001')`)
		ed.clean("config")
	}()

	t.Log("a policy written through the API shows in Services and converges live")
	func() {
		ed.show("overview")
		ed.waitJS("overview drawn", consolePages[0].ready)
		evalIn[int](ed, `window.__sameDocument = 42`)
		res := decode[writeReply](t, editor.putYAML("/v1/policies/console-inventory", `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: console-inventory}
spec:
  target: {service: inventory}
  timeouts: {request: 750ms}
`), http.StatusCreated)
		ed.waitJS("the overview shows the new revision converged", fmt.Sprintf(
			`document.getElementById('ov-revision').textContent === '%d' && document.getElementById('rollout-state').textContent === 'converged'`, res.Revision))
		require.Equal(t, 42, evalIn[int](ed, `window.__sameDocument`), "the page was reloaded")
		ed.show("services")
		ed.waitJS("Services shows the policy's timeout", `(() => {
			const row = document.querySelector('#svc-inventory tr[data-field="timeouts.request"]');
			return !!row && row.querySelector('td.value').textContent === '750ms' && row.querySelector('.policy').textContent === 'console-inventory'
				&& row.textContent.includes('service');
		})()`)
		require.Equal(t, 42, evalIn[int](ed, `window.__sameDocument`), "the page was reloaded")
		// The view of calls from checkout: its source-scoped policy wins.
		evalIn[bool](ed, `(() => { const s = document.querySelector('#svc-inventory select[aria-label="source"]'); s.value = 'checkout'; return s.dispatchEvent(new Event('change')); })()`)
		ed.waitJS("Services shows checkout's own policy", `(() => {
			const row = document.querySelector('#svc-inventory tr[data-field="timeouts.request"]');
			return !!row && row.querySelector('td.value').textContent === '1s' && row.querySelector('.policy').textContent === 'checkout-to-inventory'
				&& row.textContent.includes('service · from checkout');
		})()`)
		ed.clean("services")
	}()

	t.Log("a NACK shows its error text in Proxies")
	func() {
		// gRPC rejects a retry policy with num_retries 0: poison the routes of
		// checkout's proxyless group.
		h.cp.builder.SetMutate(func(k xdsserver.GroupKey, res *translate.Resources) {
			if k.Flavor != ir.FlavorGRPC || k.Service != "checkout" {
				return
			}
			for _, rc := range res.Routes {
				for _, vh := range rc.GetVirtualHosts() {
					for _, r := range vh.GetRoutes() {
						if ra := r.GetRoute(); ra != nil {
							ra.RetryPolicy = &routev3.RetryPolicy{RetryOn: "unavailable", NumRetries: wrapperspb.UInt32(0)}
						}
					}
				}
			}
		})
		defer h.cp.builder.SetMutate(nil)
		decode[writeReply](t, editor.putYAML("/v1/policies/console-inventory", `apiVersion: bulwark/v1
kind: ResiliencePolicy
metadata: {name: console-inventory}
spec:
  target: {service: inventory}
  timeouts: {request: 800ms}
`), http.StatusOK)
		var nack string
		eventually(t, 20*time.Second, func() error {
			p, ok := h.cp.tracker.Proxy(checkoutNode)
			if !ok || p.Types["routes"] == nil || p.Types["routes"].LastNack == nil {
				return fmt.Errorf("no route NACK from %s yet", checkoutNode)
			}
			nack = p.Types["routes"].LastNack.Error
			return nil
		})
		require.NotEmpty(t, nack)
		ed.show("proxies")
		// The filters: by service, by flavor, then rejecting only.
		ed.waitJS("proxies listed", consolePages[2].ready)
		pick := func(id, value string) {
			evalIn[bool](ed, fmt.Sprintf(`(() => { const s = document.getElementById(%q); s.value = %q; return s.dispatchEvent(new Event('change')); })()`, id, value))
		}
		pick("px-service", "frontend")
		ed.waitJS("only frontend's proxy", `(() => { const rows = document.querySelectorAll('tr.proxy');
			return rows.length === 1 && rows[0].children[1].textContent === 'frontend'; })()`)
		pick("px-service", "")
		pick("px-flavor", "envoy")
		ed.waitJS("no Envoy", `document.querySelectorAll('tr.proxy').length === 0 && document.getElementById('px-count').textContent.startsWith('0 of 3')`)
		pick("px-flavor", "")
		ed.do("only rejecting proxies", chromedp.Click(chromedp.CSS("#px-rejecting")))
		ed.waitJS("Proxies shows the NACK in full", fmt.Sprintf(`(() => {
			const rows = document.querySelectorAll('tr.proxy');
			const pre = document.querySelector('tr.proxy[data-id=%q] + tr.nackrow pre.nack');
			return rows.length >= 1 && [...rows].every((r) => r.textContent.includes('rejecting')) && !!pre && pre.textContent === %q;
		})()`, checkoutNode, nack))
		ed.screenshots("proxies-rejecting")
		ed.clean("proxies")
	}()

	t.Log("a viewer has no kill switch and the API refuses it")
	func() {
		vw := openTab(t, browser, "http://"+h.cp.AdminAddr())
		vw.open("experiments")
		vw.login(viewerToken, "viewer")
		require.Equal(t, "dashboards", evalIn[string](vw, `document.getElementById('who-name').textContent`))
		vw.waitJS("the running experiment is listed", consolePages[3].ready)
		require.False(t, evalIn[bool](vw, `!!document.getElementById('kill-switch')`), "a viewer sees the kill switch")
		vw.clean("experiments (viewer)")
		problem(t, viewer.post("/v1/experiments/stop", "", ""), http.StatusForbidden)
		require.Equal(t, http.StatusOK, viewer.get("/v1/experiments/payments-503").code, "the viewer stopped nothing")
	}()

	t.Log("the editor's kill switch stops the experiment")
	func() {
		ed.show("experiments")
		ed.waitJS("the kill switch is ready", consolePages[3].ready+` && !document.getElementById('kill-switch').disabled`)
		// The first click only asks; cancelling stops nothing.
		ed.do("ask", chromedp.Click(chromedp.CSS("#kill-switch")))
		ed.waitJS("the confirmation is open", `document.getElementById('confirm').open`)
		ed.do("cancel", chromedp.Click(chromedp.CSS("#confirm-no")))
		ed.waitJS("the confirmation is closed", `!document.getElementById('confirm').open`)
		require.Equal(t, http.StatusOK, viewer.get("/v1/experiments/payments-503").code, "cancel stopped the experiment")

		ed.do("ask again", chromedp.Click(chromedp.CSS("#kill-switch")))
		ed.waitJS("the confirmation is open", `document.getElementById('confirm').open`)
		ed.do("confirm", chromedp.Click(chromedp.CSS("#confirm-yes")))
		ed.waitJS("the experiment is gone from Running", `!!document.getElementById('exp-none') && document.getElementById('kill-result').textContent.includes('payments-503')`)
		ed.waitJS("and listed as stopped", `(() => {
			const c = document.querySelector('#exp-past section.experiment[data-name="payments-503"]');
			return !!c && c.textContent.includes('stopped') && c.textContent.includes('token@line4');
		})()`)
		require.Equal(t, http.StatusNotFound, viewer.get("/v1/experiments/payments-503").code, "the experiment still runs")
		ed.clean("experiments")
	}()

	// The Overview's chart kept the whole story: converged, the rejection,
	// converged again once the kill switch's rebuild left the poison out.
	eventually(t, 20*time.Second, func() error {
		st := decode[api.StatusReport](t, viewer.get("/v1/status"), http.StatusOK)
		if st.Rollout.Converged != st.Rollout.Total {
			return fmt.Errorf("not converged after the kill switch: %+v; %s", st.Rollout, viewer.get("/v1/proxies").body)
		}
		return nil
	})
	ed.show("overview")
	ed.waitJS("the chart shows the rejection and the recovery", `!!document.getElementById('ov-no-experiments') && !!document.querySelector('#ov-chart svg path.series.bad') &&
		document.getElementById('rollout-state').textContent === 'converged' && rolloutHistory.some((p) => p.rejecting > 0)`)
	img := ed.screenshots("overview-after")
	ed.clean("overview")
	if *updateConsoleImage {
		require.NoError(t, os.WriteFile("../docs/img/console-overview.png", img, 0o644))
	}

	// The error capture itself works: an exception thrown by a page is seen.
	evalIn[int](ed, `setTimeout(() => { throw new Error('console-probe'); }, 0), 1`)
	eventually(t, 10*time.Second, func() error {
		for _, e := range ed.consoleErrors() {
			if strings.Contains(e, "console-probe") {
				return nil
			}
		}
		return fmt.Errorf("the thrown error was not captured: %v", ed.consoleErrors())
	})
}

// Without a token file (loopback only) the console asks for no token, as
// the API does: the operator is an anonymous editor and has the kill
// switch. The admin port's root leads to the console; the API's own paths
// and its 404s are unchanged.
func TestConsoleWithoutTokens(t *testing.T) {
	browser := newBrowser(t)
	h := newHarness(t)
	b := startBackend(t, "payments-1", nil)
	h.apply(serviceYAML("payments", b.port) + "---\n" + experimentYAML("payments-slow", "payments", 5, "5m"))
	c, _ := h.dial("checkout", "payments")
	eventually(t, 20*time.Second, func() error { _, err := call(c, 2*time.Second, "x"); return err })

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get("http://" + h.cp.AdminAddr() + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "/ui/", resp.Header.Get("Location"))
	problem(t, h.api("").get("/nope"), http.StatusNotFound)

	tb := openTab(t, browser, "http://"+h.cp.AdminAddr())
	tb.open("overview")
	tb.waitJS("an anonymous editor", `!!document.getElementById('who-name') && document.getElementById('who-name').textContent === 'anonymous' && document.querySelector('#who').textContent.includes('no token file')`)
	tb.waitJS("the rollout", `!!document.getElementById('rollout-state') && document.getElementById('rollout-state').textContent === 'converged'`)
	require.False(t, evalIn[bool](tb, `!!document.getElementById('login-token')`), "the console asked for a token")
	tb.show("experiments")
	tb.waitJS("the kill switch", `!!document.getElementById('kill-switch') && !document.getElementById('kill-switch').disabled && !!document.querySelector('section.experiment[data-name="payments-slow"]')`)
	tb.clean("experiments")
}
