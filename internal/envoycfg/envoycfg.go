// Package envoycfg reads the part of an Envoy bootstrap that decides what
// Envoy sends a rate limit service: the routes' rate limit actions, the
// ratelimit filter's domain, failure mode and gRPC metadata, and the
// endpoints of the service's cluster. It builds the descriptors Envoy
// would send for a request, so that a client (and a test) can call
// ratemesh exactly as the configured Envoy would, without Envoy.
package envoycfg

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	"go.yaml.in/yaml/v3"
)

// FilterName is the name of Envoy's HTTP rate limit filter.
const FilterName = "envoy.filters.http.ratelimit"

// Bootstrap is what an Envoy bootstrap says about rate limiting.
type Bootstrap struct {
	// Domain is the ratelimit filter's domain.
	Domain string
	// FailureModeDeny is the filter's failure_mode_deny.
	FailureModeDeny bool
	// Cluster names the cluster of the rate limit service.
	Cluster string
	// Endpoints are that cluster's host:port addresses, in file order.
	Endpoints []string
	// Metadata is grpc_service.initial_metadata, values as written
	// (${VAR} not yet expanded; see ExpandMetadata).
	Metadata map[string]string
	// RateLimits are the actions of every route's rate_limits entries,
	// one list per entry: each entry is one descriptor.
	RateLimits [][]Action
}

// Action is one rate limit action of a route.
type Action struct {
	// Kind is remote_address, request_headers or generic_key.
	Kind string
	// Key is the descriptor entry's key: remote_address for
	// remote_address, descriptor_key otherwise (generic_key's default is
	// generic_key).
	Key string
	// Header is request_headers' header_name.
	Header string
	// Value is generic_key's descriptor_value.
	Value string
}

// Request is what the actions read of one HTTP request.
type Request struct {
	// RemoteAddress is the client's address, as Envoy sees it.
	RemoteAddress string
	// Headers are the request's headers by lower-case name, :path
	// included.
	Headers map[string]string
}

// Load reads the bootstrap at path.
func Load(path string) (*Bootstrap, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	bs, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return bs, nil
}

// Parse reads a bootstrap from its YAML.
func Parse(data []byte) (*Bootstrap, error) {
	var f file
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, err
	}
	out := &Bootstrap{}
	if err := out.readListeners(f.StaticResources.Listeners); err != nil {
		return nil, err
	}
	for _, c := range f.StaticResources.Clusters {
		if c.Name != out.Cluster {
			continue
		}
		for _, e := range c.LoadAssignment.Endpoints {
			for _, lb := range e.LBEndpoints {
				sa := lb.Endpoint.Address.SocketAddress
				out.Endpoints = append(out.Endpoints, sa.Address+":"+strconv.Itoa(sa.PortValue))
			}
		}
	}
	if len(out.Endpoints) == 0 {
		return nil, fmt.Errorf("cluster %q of the rate limit service: no endpoints", out.Cluster)
	}
	return out, nil
}

// readListeners reads the routes' actions and the ratelimit filter.
func (out *Bootstrap) readListeners(ls []listener) error {
	for _, l := range ls {
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				tc := f.TypedConfig
				for _, vh := range tc.RouteConfig.VirtualHosts {
					for _, r := range vh.Routes {
						for _, rl := range r.Route.RateLimits {
							acts, err := readActions(rl.Actions)
							if err != nil {
								return err
							}
							out.RateLimits = append(out.RateLimits, acts)
						}
					}
				}
				for _, hf := range tc.HTTPFilters {
					if hf.Name == FilterName {
						out.readFilter(hf.TypedConfig)
					}
				}
			}
		}
	}
	switch {
	case out.Domain == "":
		return fmt.Errorf("no %s filter with a domain", FilterName)
	case out.Cluster == "":
		return fmt.Errorf("%s: no rate_limit_service.grpc_service.envoy_grpc.cluster_name", FilterName)
	case len(out.RateLimits) == 0:
		return errors.New("no route has rate_limits")
	}
	return nil
}

// readFilter reads the ratelimit filter's settings.
func (out *Bootstrap) readFilter(rf ratelimitFilter) {
	out.Domain, out.FailureModeDeny = rf.Domain, rf.FailureModeDeny
	gs := rf.RateLimitService.GRPCService
	out.Cluster = gs.EnvoyGRPC.ClusterName
	out.Metadata = map[string]string{}
	for _, m := range gs.InitialMetadata {
		out.Metadata[m.Key] = m.Value
	}
}

// readActions reads one rate_limits entry's actions.
func readActions(in []action) ([]Action, error) {
	var out []Action
	for i, a := range in {
		switch {
		case a.RemoteAddress != nil:
			out = append(out, Action{Kind: "remote_address", Key: "remote_address"})
		case a.RequestHeaders != nil:
			out = append(out, Action{Kind: "request_headers", Key: a.RequestHeaders.DescriptorKey, Header: a.RequestHeaders.HeaderName})
		case a.GenericKey != nil:
			key := a.GenericKey.DescriptorKey
			if key == "" {
				key = "generic_key"
			}
			out = append(out, Action{Kind: "generic_key", Key: key, Value: a.GenericKey.DescriptorValue})
		default:
			return nil, fmt.Errorf("rate_limits action %d: want remote_address, request_headers or generic_key", i+1)
		}
	}
	return out, nil
}

// Descriptors are the descriptors Envoy sends for req: one per
// rate_limits entry whose every action has a value; an entry with a
// request header req lacks is not sent, as Envoy does.
func (bs *Bootstrap) Descriptors(req Request) []*rlv3.RateLimitDescriptor {
	var out []*rlv3.RateLimitDescriptor
	for _, acts := range bs.RateLimits {
		d := &rlv3.RateLimitDescriptor{}
		for _, a := range acts {
			v, ok := a.value(req)
			if !ok {
				d = nil
				break
			}
			d.Entries = append(d.Entries, &rlv3.RateLimitDescriptor_Entry{Key: a.Key, Value: v})
		}
		if d != nil {
			out = append(out, d)
		}
	}
	return out
}

// value is the entry value a produces for req; false: no descriptor.
func (a Action) value(req Request) (string, bool) {
	switch a.Kind {
	case "remote_address":
		return req.RemoteAddress, req.RemoteAddress != ""
	case "request_headers":
		v, ok := req.Headers[a.Header]
		return v, ok
	default:
		return a.Value, true
	}
}

// ExpandMetadata is Metadata with ${VAR} and $VAR replaced by lookup's
// values, as the example's compose file renders them before Envoy starts;
// a variable lookup does not know is an error naming it.
func (bs *Bootstrap) ExpandMetadata(lookup func(string) (string, bool)) (map[string]string, error) {
	out := make(map[string]string, len(bs.Metadata))
	var missing []string
	for k, v := range bs.Metadata {
		out[k] = os.Expand(v, func(name string) string {
			val, ok := lookup(name)
			if !ok || val == "" {
				missing = append(missing, name)
			}
			return val
		})
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("initial_metadata needs %v set", missing)
	}
	return out, nil
}
