// Package rls is an Envoy rate limit service backed by a ratemesh cluster:
// it answers envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit
// and reads the configuration format of envoyproxy/ratelimit (the
// reference service), with no Redis or Memcached behind it.
//
// Each descriptor of a request is one counter, owned in the cluster by the
// hash of the request's domain and the descriptor's entries, so a client's
// counter lives on one node and its count is exact cluster-wide. Any node
// answers any request; the check is forwarded to the owner.
//
// Embedders build a Service from a *ratemesh.Node (or any Checker) and a
// Config, and register it on their own grpc.Server, best made with the
// service's ServerOptions:
//
//	cfg, err := rls.LoadPath("/etc/ratelimit/config")
//	svc, err := rls.New(node, cfg, rls.Options{})
//	grpcServer := grpc.NewServer(rls.ServerOptions()...)
//	svc.Register(grpcServer)
//	svc.RegisterHealth(grpcServer)
//
// Where ratemesh differs from the reference, on purpose:
//
//   - A denied check consumes nothing: a descriptor over its limit does not
//     add its hits_addend to the counter (the reference adds it anyway), so
//     a client that keeps retrying while denied regains its quota when the
//     window ends, and a large hits_addend that does not fit is refused
//     without using up what is left.
//   - A counter's window starts at its first hit and lasts one unit (the
//     reference aligns windows to the clock), so a burst straddling a clock
//     boundary cannot get twice the limit.
//   - limit_remaining is what is left after the check, also when it is
//     denied (the reference reports 0 then).
package rls
