package rls

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/ratemesh/ratemesh/bucket"
)

// invalid is an InvalidArgument status naming the field at fault.
func invalid(field, format string, args ...any) error {
	return status.Error(codes.InvalidArgument, "rls: "+field+": "+fmt.Sprintf(format, args...))
}

// validate refuses a request no lookup can answer, as Envoy's own
// validation rules of the messages would: no domain, no descriptors, a
// descriptor without entries, an entry without a key. It also bounds the
// request's size.
func (s *Service) validate(req *pb.RateLimitRequest) error {
	descs := req.GetDescriptors()
	switch {
	case req.GetDomain() == "":
		return invalid("domain", "rate limit domain must not be empty")
	case len(descs) == 0:
		return invalid("descriptors", "rate limit descriptor list must not be empty")
	case len(descs) > s.opts.MaxDescriptors:
		return invalid("descriptors", "%d descriptors, at most %d in one request", len(descs), s.opts.MaxDescriptors)
	}
	for i, d := range descs {
		entries := d.GetEntries()
		switch {
		case len(entries) == 0:
			return invalid(fmt.Sprintf("descriptors[%d].entries", i), "a descriptor needs at least one entry")
		case len(entries) > s.opts.MaxEntries:
			return invalid(fmt.Sprintf("descriptors[%d].entries", i), "%d entries, at most %d", len(entries), s.opts.MaxEntries)
		case d.GetIsNegativeHits():
			return invalid(fmt.Sprintf("descriptors[%d].is_negative_hits", i), "not supported: a check never gives quota back")
		}
		for j, e := range entries {
			if e.GetKey() == "" {
				return invalid(fmt.Sprintf("descriptors[%d].entries[%d].key", i, j), "empty")
			}
		}
	}
	return nil
}

// plan finds each descriptor's limit, drops the limits others replace,
// and names the counters left to check.
func (s *Service) plan(cfg *Config, req *pb.RateLimitRequest) ([]plan, error) {
	descs, domainName := req.GetDescriptors(), req.GetDomain()
	plans := make([]plan, len(descs))
	extra := 0
	for _, d := range descs {
		if n := len(d.GetEntries()); n > planMatches {
			extra += n
		}
	}
	var spill []*descNode // nodes of descriptors of more entries than a plan holds
	if extra > 0 {
		spill = make([]*descNode, extra)
	}
	var replaced map[string]bool
	known := cfg.domains[domainName] != nil
	for i, d := range descs {
		p, n := &plans[i], len(d.GetEntries())
		if n <= planMatches {
			p.nodes = p.matches[:n:n]
		} else {
			p.nodes, spill = spill[:n:n], spill[n:]
		}
		var err error
		if d.GetLimit() != nil && known {
			p.rule, err = overrideRule(domainName, d, i, s.opts.MaxOverridePeriod)
		} else {
			p.rule = cfg.lookup(domainName, d.GetEntries(), p.nodes)
		}
		if err != nil {
			return nil, err
		}
		for _, name := range planReplaces(p.rule) {
			if replaced == nil {
				replaced = map[string]bool{}
			}
			replaced[name] = true
		}
	}
	var keyBuf [128]byte
	for i := range plans {
		p := &plans[i]
		if p.rule == nil || p.rule.Unlimited {
			continue
		}
		if p.rule.Name != "" && replaced[p.rule.Name] {
			p.rule = nil
			continue
		}
		entries := descs[i].GetEntries()
		p.hits = hitsOf(req, i)
		p.cost = costOf(p.hits)
		p.key = routingKey(keyBuf[:0], domainName, entries, p.nodes)
		if p.rule.override {
			p.key = overrideKey(p.rule, p.key)
		}
		if s.metrics != nil {
			if p.rule.override {
				p.metric = descriptorPath(domainName, entries)
			} else {
				p.metric = metricKey(p.rule, domainName, entries, p.nodes)
			}
		}
	}
	return plans, nil
}

func planReplaces(r *Rule) []string {
	if r == nil {
		return nil
	}
	return r.Replaces
}

// overrideRule is the limit a descriptor carries itself (Envoy's
// RateLimitDescriptor.limit), which the reference applies instead of the
// config's, never in shadow mode. Its window is at most maxPeriod, as a
// /v1/check limit is: a request must not make counters that outlive any
// configured one.
func overrideRule(domainName string, d *rlv3.RateLimitDescriptor, i int, maxPeriod time.Duration) (*Rule, error) {
	o := d.GetLimit()
	u := pb.RateLimitResponse_RateLimit_Unit(o.GetUnit())
	period, ok := unitPeriod(u)
	if !ok {
		return nil, invalid(fmt.Sprintf("descriptors[%d].limit.unit", i), "%v is not a unit", o.GetUnit())
	}
	mult := uint32(1)
	if m := o.GetUnitMultiplier(); m != nil {
		mult = m.GetValue()
	}
	switch {
	case mult == 0:
		return nil, invalid(fmt.Sprintf("descriptors[%d].limit.unit_multiplier", i), "0; at least 1")
	case time.Duration(mult) > maxPeriod/period:
		return nil, invalid(fmt.Sprintf("descriptors[%d].limit", i), "a window of %d × %v is longer than %v, the longest a request may choose", mult, u, maxPeriod)
	}
	rpu := o.GetRequestsPerUnit()
	return &Rule{
		Path: domainName + ".(override)", Unit: u, RequestsPerUnit: rpu, override: true,
		counters: []bucket.Counter{newCounter("rls-override", rpu, time.Duration(mult)*period)},
	}, nil
}

// OverrideKeyPrefix starts the routing key of every counter a descriptor's
// own limit makes, followed by the limit and the descriptor's routing
// key: each limit a request chooses has a key of its own, apart from the
// configured rule's, so requests choosing many limits for a victim's
// descriptor cannot fill that descriptor's counter table (at most
// bucket.MaxCountersPerKey live counters) and make its configured rule
// fail. GET /v1/cluster/owner?key=... with the whole key names the owner.
const OverrideKeyPrefix = "rls-override|"

// overrideKey is the routing key of an override's counter for the
// descriptor whose routing key is key.
func overrideKey(r *Rule, key string) string {
	l := r.counters[0].Limit
	return OverrideKeyPrefix + strconv.FormatInt(l.Amount, 10) + "/" + l.Period.String() + "|" + key
}

// descriptorPath names a descriptor by its request entries, as the
// reference's metrics of overridden limits do: "domain.key_value.key".
func descriptorPath(domainName string, entries []*rlv3.RateLimitDescriptor_Entry) string {
	var b strings.Builder
	b.WriteString(domainName)
	for _, e := range entries {
		b.WriteByte('.')
		b.WriteString(e.GetKey())
		if e.GetValue() != "" {
			b.WriteByte('_')
			b.WriteString(e.GetValue())
		}
	}
	return b.String()
}

// statusMsgs are the messages of one descriptor's answer.
type statusMsgs struct {
	status pb.RateLimitResponse_DescriptorStatus
	limit  pb.RateLimitResponse_RateLimit
	reset  durationpb.Duration
}

// newResponse allocates a response of n statuses and the messages to
// fill them with: one block for a request of one descriptor, the usual
// case, else three, where each message apart would take 2 + 3n.
func newResponse(n int) (*pb.RateLimitResponse, []statusMsgs) {
	if n == 1 {
		one := new(struct {
			resp     pb.RateLimitResponse
			statuses [1]*pb.RateLimitResponse_DescriptorStatus
			msgs     [1]statusMsgs
		})
		one.resp.Statuses = one.statuses[:]
		return &one.resp, one.msgs[:]
	}
	return &pb.RateLimitResponse{Statuses: make([]*pb.RateLimitResponse_DescriptorStatus, n)}, make([]statusMsgs, n)
}

// respond builds the response from the checks' results.
func (s *Service) respond(plans []plan, now time.Time) *pb.RateLimitResponse {
	resp, msgs := newResponse(len(plans))
	var failed, quotas, failedQuotas int
	var closest *pb.RateLimitResponse_DescriptorStatus
	closestLeft := uint32(math.MaxUint32)
	for i := range plans {
		st := s.status(&plans[i], &msgs[i], now)
		resp.Statuses[i] = st
		if plans[i].key == "" {
			continue // no limit, unlimited or replaced
		}
		if st.CurrentLimit != nil && st.LimitRemaining < closestLeft {
			closest, closestLeft = st, st.LimitRemaining
		}
		quota := plans[i].rule.QuotaMode
		if quota {
			quotas++
		}
		if st.Code != pb.RateLimitResponse_OVER_LIMIT {
			continue
		}
		if quota {
			failedQuotas++
			continue
		}
		failed++
		closest, closestLeft = st, 0
	}
	resp.OverallCode = pb.RateLimitResponse_OK
	if failed > 0 || (quotas > 0 && quotas == failedQuotas) {
		resp.OverallCode = pb.RateLimitResponse_OVER_LIMIT
	}
	if h := s.opts.Headers; h.on() && closest != nil {
		resp.ResponseHeadersToAdd = []*corev3.HeaderValue{
			{Key: h.Limit, Value: strconv.FormatUint(uint64(closest.CurrentLimit.RequestsPerUnit), 10)},
			{Key: h.Remaining, Value: strconv.FormatUint(uint64(closest.LimitRemaining), 10)},
			{Key: h.Reset, Value: strconv.FormatInt(closest.DurationUntilReset.GetSeconds(), 10)},
		}
	}
	if resp.OverallCode == pb.RateLimitResponse_OVER_LIMIT && s.opts.Shadow {
		resp.OverallCode = pb.RateLimitResponse_OK
		s.metrics.globalShadow()
	}
	return resp
}

// status is one descriptor's answer, made of m; it records the
// descriptor's metrics.
func (s *Service) status(p *plan, m *statusMsgs, now time.Time) *pb.RateLimitResponse_DescriptorStatus {
	switch {
	case p.rule == nil:
		m.status.Code = pb.RateLimitResponse_OK
		return &m.status
	case p.rule.Unlimited:
		m.status.Code, m.status.LimitRemaining = pb.RateLimitResponse_OK, math.MaxUint32
		return &m.status
	}
	st := &p.res.Statuses[0]
	over := !p.res.Allowed
	s.metrics.record(p, over, st, s.opts.NearLimitRatio)
	if s.opts.Observer != nil {
		s.opts.Observer.Decided(now, Decision{Allowed: !over, Shadow: over && (p.rule.ShadowMode || s.opts.Shadow),
			Key: p.key, Rule: p.rule.Path, Status: *st})
	}
	m.status.Code = pb.RateLimitResponse_OK
	if over && !p.rule.ShadowMode {
		m.status.Code = pb.RateLimitResponse_OVER_LIMIT
	}
	m.limit.Name, m.limit.RequestsPerUnit, m.limit.Unit = p.rule.Name, p.rule.RequestsPerUnit, p.rule.Unit
	m.status.CurrentLimit = &m.limit
	m.status.LimitRemaining = uint32(min(max(st.Remaining, 0), math.MaxUint32))
	m.reset.Seconds = untilReset(st.Reset, now)
	m.status.DurationUntilReset = &m.reset
	return &m.status
}

// untilReset is the time from now until reset in whole seconds, rounded
// up as a client waiting that long finds the quota whole again.
func untilReset(reset, now time.Time) int64 {
	d := max(reset.Sub(now), 0)
	return int64((d + time.Second - 1) / time.Second)
}
