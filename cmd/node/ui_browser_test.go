package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// screenshotEnv names the file the browser test saves the dashboard to,
// when set (docs/dashboard.png is made this way).
const screenshotEnv = "RATEMESH_DASHBOARD_PNG"

// page is what the browser test reads off the dashboard.
type page struct {
	Status     string   `json:"status"`
	Members    []string `json:"members"`
	DeniedRate float64  `json:"deniedRate"`
	TopKeys    []string `json:"topKeys"`
	Charts     int      `json:"charts"`
	Shadow     []string `json:"shadow"`
	// Busy is how many of the last seconds of the first node's chart saw
	// traffic.
	Busy int `json:"busy"`
	// Gateway is the gateway limits panel's rows, their cells joined by
	// spaces (none while hidden).
	Gateway []string `json:"gateway"`
}

// readPage is evaluated in the page: the figures the test asserts on.
const readPage = `(() => ({
	status: document.getElementById("status").textContent,
	members: [...document.querySelectorAll("#members tbody tr")].map(tr => tr.dataset.name + " " + tr.children[1].textContent),
	deniedRate: parseFloat(document.getElementById("denied-rate").textContent) || 0,
	topKeys: [...document.querySelectorAll("#top tbody tr")].map(tr => tr.dataset.key),
	charts: document.querySelectorAll("#charts canvas").length,
	shadow: [...document.querySelectorAll("#shadow tbody tr")].map(tr => tr.children[0].textContent + " " + tr.children[1].textContent),
	busy: last ? last.nodes[0].history.filter(s => s.allowed + s.denied > 0).length : 0,
	gateway: document.getElementById("gateway-card").hidden ? [] : ` + gatewayRows + `(),
}))()`

// gatewayRows is a function readPage and readGatewayPage call: the rows of
// the gateway limits panel, their cells' text joined by spaces (the flags'
// pills by spaces too).
const gatewayRows = `(() => [...document.querySelectorAll("#gateway tbody tr")].map(tr =>
	[...tr.children].map(td => td.children.length ? [...td.children].map(c => c.textContent).join(" ") : td.textContent).filter(s => s).join(" ")))`

// TestDashboardInBrowser opens /ui/ of one of three real nodes in headless
// Chromium while a client floods GET /products: the page shows the three
// members alive, a denied rate above zero and the flooded key (hashed: the
// page has no token) among the top denied, with a chart per node.
func TestDashboardInBrowser(t *testing.T) {
	chromium := chromiumOrSkip(t)
	policy := writePolicy(t, "routes:\n  - method: GET\n    path: /flash-sale\n    limits: \"3 per minute\"\n    shadow: true\n")
	// Without --api-token the page shows keys hashed under a secret
	// derived from --secret, the same on the three nodes.
	const secret = "test-secret-0123456789"
	flooded := nodeapi.HideKey((&httpOptions{clusterSecret: secret}).derivedSecret(keyHashLabel), "apikey:mallory")
	addrs := threeNodes(t, "--policy", policy, "--rls-config", rlsConfig(t), "--grpc-port", "0", "--secret", secret)
	stopFlood := floodInBackground(addrs, "mallory", "eve")
	t.Cleanup(stopFlood)

	ctx := openDashboard(t, chromium, addrs[0])
	var got page
	var why string
	testkit.Eventually(t, 20*time.Second, "the dashboard shows 3 members, denials and the flooded key", func() bool {
		var err error
		if got, err = chromedp.Run(ctx, chromedp.Evaluate[page](readPage)); err != nil {
			t.Fatal(err)
		}
		why = fmt.Sprintf("the page shows %+v", got)
		return got.Status == "live" && len(got.Members) == 3 && got.DeniedRate > 0 && len(got.TopKeys) > 0 &&
			got.TopKeys[0] == flooded && got.Charts == 3 && len(got.Shadow) == 1 && got.Shadow[0] == "GET /flash-sale 3 per 1 minute" &&
			slices.Equal(got.Gateway, []string{"edge.user 100 per 1 minute"})
	}, &why)
	for i, m := range got.Members {
		if want := "cli-" + strconv.Itoa(i) + " alive"; m != want {
			t.Fatalf("member %d shows %q, want %q", i, m, want)
		}
	}
	if file := os.Getenv(screenshotEnv); file != "" {
		// A chart worth looking at: half a minute of traffic.
		testkit.Eventually(t, 60*time.Second, "30 seconds of traffic on the chart", func() bool {
			got, _ = chromedp.Run(ctx, chromedp.Evaluate[page](readPage))
			return got.Busy >= 30
		})
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// On a node with --api-token the page asks for the token, keeps it for
// the session, and then shows every member's stats: the node passes the
// token on to the others.
func TestDashboardAsksForToken(t *testing.T) {
	chromium := chromiumOrSkip(t)
	addrs := threeNodes(t, "--api-token", tokenA)
	ctx := openDashboard(t, chromium, addrs[1])
	enterToken(t, ctx, tokenA)
	answered := `document.getElementById("status").textContent === "live" && document.querySelectorAll("#nodes tbody tr").length === 3 && !document.querySelector("#nodes .pill.down")`
	testkit.Eventually(t, 20*time.Second, "three nodes' stats", func() bool {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](answered))
		return err == nil && ok
	})
}

// enterToken waits for the page's token form and submits token.
func enterToken(t *testing.T, ctx context.Context, token string) {
	t.Helper()
	visible := `!document.getElementById("token-form").hidden`
	testkit.Eventually(t, 20*time.Second, "the token form", func() bool {
		shown, err := chromedp.Run(ctx, chromedp.Evaluate[bool](visible))
		return err == nil && shown
	})
	enter := `document.getElementById("token").value = ` + strconv.Quote(token) + `; document.getElementById("token-form").requestSubmit(); true`
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](enter)); err != nil {
		t.Fatal(err)
	}
}

// openDashboard opens /ui/ of the node at addr in a browser that stops
// with the test.
func openDashboard(t *testing.T, chromium, addr string) context.Context {
	t.Helper()
	ctx, cancel := browser(t, chromium)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 1100), chromedp.Navigate("http://"+addr+"/ui/")); err != nil {
		t.Fatal(err)
	}
	return ctx
}

// chromiumOrSkip is the path of a Chromium or Chrome binary; the test is
// skipped without one, and in -short mode (a browser takes seconds to
// start).
func chromiumOrSkip(t *testing.T) string {
	t.Helper()
	testkit.SkipInShort(t, "a browser test")
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium is not installed (apt-get install chromium): the dashboard's browser test is skipped")
	}
	return chromium
}

// findChromium is the path of a Chromium or Chrome binary, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browserStarts is how many times browser tries to start Chromium. A start
// can fail on a loaded machine for reasons of the browser's own (it exits
// before it prints its DevTools address, with nothing but warnings in its
// output); that is no defect of the dashboard, so the test tries again
// rather than fail, and logs each failed start.
const browserStarts = 3

// browser starts headless Chromium for the test; cancel stops it and
// waits for the process.
func browser(t *testing.T, path string) (context.Context, context.CancelFunc) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ctx, cancel := startBrowser(path)
		err := chromedp.Do(ctx) // starts the browser
		if err == nil {
			return ctx, cancel
		}
		cancel()
		if attempt == browserStarts {
			t.Fatalf("chromium did not start in %d attempts; the last: %v", browserStarts, err)
		}
		t.Logf("chromium did not start (attempt %d of %d): %v", attempt, browserStarts, err)
	}
}

// startBrowser is a context that starts headless Chromium at its first
// use.
func startBrowser(path string) (context.Context, context.CancelFunc) {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, ccancel := chromedp.NewContext(actx)
	ctx, tcancel := context.WithTimeout(ctx, 60*time.Second)
	return ctx, func() { tcancel(); ccancel(); acancel() }
}

// floodInBackground sends, every 50 ms until stop is called, round robin
// over addrs: every other time GET /products as key (soon denied), GET
// /flash-sale as shadowKey (a shadow route here: allowed, soon
// shadow-denied), and twice GET /categories as one of 100 other keys
// (allowed: 100 per hour each).
func floodInBackground(addrs []string, key, shadowKey string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	c := &http.Client{Timeout: 2 * time.Second}
	send := func(addr, path, key string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		req.Header.Set("X-API-KEY", key)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			addr := addrs[i%len(addrs)]
			if i%2 == 0 {
				send(addr, "/products", key)
			}
			send(addr, "/flash-sale", shadowKey)
			send(addr, "/categories", "user-"+strconv.Itoa(2*i%100))
			send(addr, "/categories", "user-"+strconv.Itoa((2*i+1)%100))
		}
	})
	return func() {
		close(done)
		wg.Wait()
		c.CloseIdleConnections()
	}
}
