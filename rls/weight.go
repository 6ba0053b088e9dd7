package rls

import (
	"fmt"

	pb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// What a request holds while it is decided, beyond its bytes. Its bytes
// are held up to three times: decoded, in routing keys and in metric
// names. Each descriptor adds its plan, routing key, status and answer;
// each entry its decoded message and its place in the plan. A request of
// many tiny entries takes up to 20 times its size on the wire this way
// (4.1 MB of one-letter entries decode to 70 MB live, 85 bytes an entry),
// which is why the shape is checked before the request is decoded.
const (
	bytesWeight      = 3
	descriptorWeight = 1 << 10
	entryWeight      = 128
	// jsonWeight is what a byte of POST /json can take once decoded: an
	// entry of 11 bytes ({"key":"k"}) decodes to about 100.
	jsonWeight = 10
)

// Fields of RateLimitRequest and RateLimitDescriptor on the wire.
const (
	requestDescriptors = 2
	descriptorEntries  = 1
)

// Weigh checks the shape of a request from its wire form raw, before it
// is decoded into m, and returns the bytes deciding it holds (see
// MaxWeight). A RateLimitRequest with more descriptors, or a descriptor
// with more entries, than the Options allow is refused with
// InvalidArgument, as validate would after decoding. Other messages
// weigh their size.
func (s *Service) Weigh(raw []byte, m any) (int64, error) {
	if _, ok := m.(*pb.RateLimitRequest); !ok {
		return int64(len(raw)), nil
	}
	descs, entries := 0, 0
	err := eachField(raw, requestDescriptors, func(i int, d []byte) error {
		descs++
		if descs > s.opts.MaxDescriptors {
			return nil // counted only, for the message
		}
		n := 0
		if err := eachField(d, descriptorEntries, func(int, []byte) error { n++; return nil }); err != nil {
			return err
		}
		if n > s.opts.MaxEntries {
			return invalid(fmt.Sprintf("descriptors[%d].entries", i), "%d entries, at most %d", n, s.opts.MaxEntries)
		}
		entries += n
		return nil
	})
	switch {
	case err != nil:
		return 0, err
	case descs > s.opts.MaxDescriptors:
		return 0, invalid("descriptors", "%d descriptors, at most %d in one request", descs, s.opts.MaxDescriptors)
	}
	return weight(len(raw), descs, entries), nil
}

// MaxWeight is the most Weigh returns for a request of at most maxBytes
// under the default MaxDescriptors and MaxEntries: what to reserve for a
// request before it is read.
func MaxWeight(maxBytes int) int64 {
	return weight(maxBytes, DefaultMaxDescriptors, DefaultMaxDescriptors*DefaultMaxEntries)
}

func weight(size, descs, entries int) int64 {
	return bytesWeight*int64(size) + descriptorWeight*int64(descs) + entryWeight*int64(entries)
}

// weightOf is Weigh's figure for a request already decoded (POST /json).
func weightOf(req *pb.RateLimitRequest) int64 {
	entries := 0
	for _, d := range req.GetDescriptors() {
		entries += len(d.GetEntries())
	}
	return weight(proto.Size(req), len(req.GetDescriptors()), entries)
}

// eachField calls f with the count so far and the bytes of each
// length-delimited field num of the message b, skipping the others.
func eachField(b []byte, num protowire.Number, f func(i int, v []byte) error) error {
	for i := 0; len(b) > 0; {
		n, typ, k := protowire.ConsumeTag(b)
		if k < 0 {
			return invalid("request", "not a valid message: %v", protowire.ParseError(k))
		}
		b = b[k:]
		if n == num && typ == protowire.BytesType {
			v, k := protowire.ConsumeBytes(b)
			if k < 0 {
				return invalid("request", "not a valid message: %v", protowire.ParseError(k))
			}
			if err := f(i, v); err != nil {
				return err
			}
			i++
			b = b[k:]
			continue
		}
		k = protowire.ConsumeFieldValue(n, typ, b)
		if k < 0 {
			return invalid("request", "not a valid message: %v", protowire.ParseError(k))
		}
		b = b[k:]
	}
	return nil
}
