package ratemesh_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/bucket"
)

// Two nodes in one program share one limit: "5 per minute" for an API key
// holds across both, whichever node a request arrives at.
func Example() {
	ctx := context.Background()
	a, _ := ratemesh.New(ratemesh.LocalConfig())
	b, _ := ratemesh.New(ratemesh.LocalConfig())
	a.Start(ctx)
	b.Start(ctx)
	defer a.Close(ctx)
	defer b.Close(ctx)
	if err := b.Join(ctx, a.GossipAddr()); err != nil {
		fmt.Println(err)
		return
	}
	for len(a.Members()) < 2 || len(b.Members()) < 2 { // gossip converges in milliseconds
		time.Sleep(time.Millisecond)
	}

	limits, _ := bucket.Parse("5 per minute")
	req := ratemesh.Request{
		Key:      "apikey:demo",
		Counters: []bucket.Counter{{Scope: "GET /products", Limit: limits[0]}},
		Cost:     1,
	}
	for i, node := range []*ratemesh.Node{a, b, a, b, a, b} {
		res, err := node.Check(ctx, req)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("request %d: allowed=%v remaining=%d\n", i+1, res.Allowed, res.Statuses[0].Remaining)
	}
	// Output:
	// request 1: allowed=true remaining=4
	// request 2: allowed=true remaining=3
	// request 3: allowed=true remaining=2
	// request 4: allowed=true remaining=1
	// request 5: allowed=true remaining=0
	// request 6: allowed=false remaining=0
}
