package grpcguard

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Registrar wraps r so that every service registered through it reads
// its requests under the guard's byte budget: ReadReserve is taken before
// a request is read (its size is not known before), and all but the
// request's weight is given back as soon as it is decoded; the rest when
// the handler returns. Interceptors come too late for this: a unary
// request is decoded before they run.
func (g *Guard) Registrar(r grpc.ServiceRegistrar) grpc.ServiceRegistrar {
	return registrar{r, g}
}

type registrar struct {
	grpc.ServiceRegistrar
	g *Guard
}

func (r registrar) RegisterService(sd *grpc.ServiceDesc, impl any) {
	w := *sd
	w.Methods = make([]grpc.MethodDesc, len(sd.Methods))
	for i, m := range sd.Methods {
		w.Methods[i] = grpc.MethodDesc{MethodName: m.MethodName, Handler: r.g.unary("/"+sd.ServiceName+"/"+m.MethodName, m.Handler)}
	}
	w.Streams = make([]grpc.StreamDesc, len(sd.Streams))
	for i, s := range sd.Streams {
		w.Streams[i] = s
		w.Streams[i].Handler = r.g.stream(s.Handler)
	}
	r.ServiceRegistrar.RegisterService(&w, impl)
}

// unary wraps a unary method's handler: its decoding takes the bytes. A
// panic while the request is weighed or decoded is recovered as in the
// interceptors, which run only after.
func (g *Guard) unary(method string, h grpc.MethodHandler) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		var held int64
		defer func() { g.budget.release(held) }()
		budgeted := func(m any) (err error) {
			defer g.recover(method, &err)
			held, err = g.read(ctx, method, dec, m)
			return err
		}
		return h(srv, ctx, budgeted, ic)
	}
}

// decoded is what decode returned.
type decoded struct {
	keep int64
	err  error
}

// read takes the read reserve, decodes a request into m with dec, gives
// back all but what the request holds while it is decided, and returns
// that (0 when it fails). A request not received within ReadTimeout
// fails: a client that sends one slowly must not hold the reserve for
// ever. gRPC then ends the stream, which ends the read, and the reserve
// is given back only then, by the reading goroutine: the bytes read so
// far are held until that point.
func (g *Guard) read(ctx context.Context, method string, dec func(any) error, m any) (int64, error) {
	if err := g.budget.acquire(ctx, g.reserve); err != nil {
		return 0, status.FromContextError(err).Err()
	}
	done := make(chan decoded, 1)
	go func() {
		var d decoded
		defer func() { done <- d }()
		defer g.recover(method, &d.err)
		d.keep, d.err = g.decode(dec, m)
		if d.err != nil {
			d.keep = 0
		}
	}()
	t := time.NewTimer(g.readTimeout)
	defer t.Stop()
	select {
	case d := <-done:
		g.budget.release(g.reserve - d.keep)
		return d.keep, d.err
	case <-t.C:
		go func() {
			<-done
			g.budget.release(g.reserve)
		}()
		return 0, status.Errorf(codes.DeadlineExceeded, "grpcguard: the request was not received within %v", g.readTimeout)
	}
}

// decode decodes a request into m with dec and returns what it holds of
// the budget. With Weigh, the request is first read as raw bytes (as the
// unknown fields of an Empty: one copy, no decoding) and weighed, so that
// a request whose decoded form would take more than its reserve is
// refused before it is decoded.
func (g *Guard) decode(dec func(any) error, m any) (int64, error) {
	pm, ok := m.(proto.Message)
	if g.weigh == nil || !ok {
		if err := dec(m); err != nil {
			return 0, err
		}
		return g.weight(m), nil
	}
	var raw emptypb.Empty
	if err := dec(&raw); err != nil {
		return 0, err
	}
	b := raw.ProtoReflect().GetUnknown()
	w, err := g.weigh(b, m)
	switch {
	case err != nil:
		return 0, err
	case w > g.reserve:
		return 0, status.Errorf(codes.ResourceExhausted, "grpcguard: the request would hold %d bytes, more than the %d reserved for one", w, g.reserve)
	}
	if err := proto.Unmarshal(b, pm); err != nil {
		return 0, status.Errorf(codes.Internal, "grpc: error unmarshalling request: %v", err)
	}
	return w, nil
}

// stream wraps a streaming method's handler: each message it receives
// takes the bytes while it is read and decoded. What a stream keeps of
// its messages afterwards is not counted (the health service's Watch
// keeps nothing).
func (g *Guard) stream(h grpc.StreamHandler) grpc.StreamHandler {
	return func(srv any, ss grpc.ServerStream) error {
		return h(srv, &budgetedStream{ServerStream: ss, g: g})
	}
}

type budgetedStream struct {
	grpc.ServerStream
	g *Guard
}

func (s *budgetedStream) RecvMsg(m any) error {
	if err := s.g.budget.acquire(s.Context(), s.g.reserve); err != nil {
		return status.FromContextError(err).Err()
	}
	defer s.g.budget.release(s.g.reserve)
	return s.ServerStream.RecvMsg(m)
}
