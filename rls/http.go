package rls

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ratemesh/ratemesh/bucket"
)

// MaxJSONBody bounds a POST /json body, as gRPC bounds a message.
const MaxJSONBody = 4 << 20

// ConfigHandler serves GET /rlconfig: the config in force as text, one
// line per limit, as the reference's debug page does; with ?format=json,
// the same rules as a JSON list of RuleInfo (the dashboard's gateway
// limits).
func (s *Service) ConfigHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cfg := s.Config()
		switch f := r.URL.Query().Get("format"); f {
		case "":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			io.WriteString(w, cfg.Dump())
		case "json":
			rules := cfg.Rules()
			out := make([]RuleInfo, len(rules))
			for i, r := range rules {
				out[i] = r.Info()
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(out)
		default:
			http.Error(w, "rls: format "+strconv.Quote(f)+": want json, or none for text", http.StatusBadRequest)
		}
	})
}

// RuleInfo is a configured limit as GET /rlconfig?format=json lists it.
type RuleInfo struct {
	Path string `json:"path"` // the descriptor's full key, "edge.user.plan_gold"
	// Limit is the limit in ratemesh's words ("10 per 1 minute"), as the
	// stats name a rule's limit; "unlimited" for unlimited: true.
	Limit      string   `json:"limit"`
	ShadowMode bool     `json:"shadow_mode,omitempty"`
	QuotaMode  bool     `json:"quota_mode,omitempty"`
	Name       string   `json:"name,omitempty"`
	Replaces   []string `json:"replaces,omitempty"`
}

// Info describes r for GET /rlconfig?format=json.
func (r *Rule) Info() RuleInfo {
	ri := RuleInfo{Path: r.Path, Limit: "unlimited", ShadowMode: r.ShadowMode, QuotaMode: r.QuotaMode, Name: r.Name, Replaces: r.Replaces}
	if period, ok := unitPeriod(r.Unit); ok && !r.Unlimited {
		ri.Limit = bucket.Limit{Amount: int64(r.RequestsPerUnit), Period: period}.String()
	}
	return ri
}

// JSONHandler serves POST /json: a RateLimitRequest in protobuf's JSON
// form, for curl and for clients without gRPC, answered with the
// RateLimitResponse as JSON and, as the reference does, 200 when the
// overall code is OK and 429 when it is OVER_LIMIT. A request that does
// not decode or validate gets 400; a check that fails, 503.
func (s *Service) JSONHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		held, err := s.take(r.Context(), jsonWeight*MaxJSONBody)
		if err != nil {
			http.Error(w, "rls: too many requests in flight: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer func() { s.give(held) }()
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxJSONBody))
		if err != nil {
			code := http.StatusBadRequest
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				code = http.StatusRequestEntityTooLarge
			}
			http.Error(w, "rls: body: "+err.Error(), code)
			return
		}
		var req pb.RateLimitRequest
		if err := protojson.Unmarshal(body, &req); err != nil {
			http.Error(w, "rls: body: "+err.Error(), http.StatusBadRequest)
			return
		}
		// Decoded, the request holds what deciding it takes.
		keep := min(weightOf(&req), held)
		s.give(held - keep)
		held = keep
		resp, err := s.ShouldRateLimit(r.Context(), &req)
		if err != nil {
			code := http.StatusServiceUnavailable
			if status.Code(err) == codes.InvalidArgument {
				code = http.StatusBadRequest
			}
			http.Error(w, status.Convert(err).Message(), code)
			return
		}
		out, err := protojson.Marshal(resp)
		var compact bytes.Buffer
		if err == nil {
			// protojson varies its spacing on purpose; scripts reading the
			// answer get one stable form.
			err = json.Compact(&compact, out)
		}
		if err != nil {
			http.Error(w, "rls: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if resp.OverallCode == pb.RateLimitResponse_OVER_LIMIT {
			w.WriteHeader(http.StatusTooManyRequests)
		}
		compact.WriteByte('\n')
		w.Write(compact.Bytes())
	})
}

// take acquires n bytes of Options.Budget, if any, and returns what it
// took.
func (s *Service) take(ctx context.Context, n int64) (int64, error) {
	if s.opts.Budget == nil {
		return 0, nil
	}
	return s.opts.Budget.Acquire(ctx, n)
}

// give releases n bytes taken with take.
func (s *Service) give(n int64) {
	if s.opts.Budget != nil && n > 0 {
		s.opts.Budget.Release(n)
	}
}
