package grpcguard

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Registrar wraps r so that every service registered through it reads
// its requests under the guard's byte budget: the largest message's worth
// of bytes is taken before a request is read (its size is not known
// before), and all but the decoded request's size is given back as soon
// as it is decoded; the rest when the handler returns. Interceptors come
// too late for this: a unary request is decoded before they run.
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
		w.Methods[i] = grpc.MethodDesc{MethodName: m.MethodName, Handler: r.g.unary(m.Handler)}
	}
	w.Streams = make([]grpc.StreamDesc, len(sd.Streams))
	for i, s := range sd.Streams {
		w.Streams[i] = s
		w.Streams[i].Handler = r.g.stream(s.Handler)
	}
	r.ServiceRegistrar.RegisterService(&w, impl)
}

// unary wraps a unary method's handler: its decoding takes the bytes.
func (g *Guard) unary(h grpc.MethodHandler) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		var held int64
		defer func() { g.budget.release(held) }()
		budgeted := func(m any) error {
			if err := g.budget.acquire(ctx, g.maxMsg); err != nil {
				return status.FromContextError(err).Err()
			}
			held = g.maxMsg
			err := dec(m)
			keep := int64(0)
			if err == nil {
				keep = g.weight(m)
			}
			g.budget.release(held - keep)
			held = keep
			return err
		}
		return h(srv, ctx, budgeted, ic)
	}
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
	if err := s.g.budget.acquire(s.Context(), s.g.maxMsg); err != nil {
		return status.FromContextError(err).Err()
	}
	defer s.g.budget.release(s.g.maxMsg)
	return s.ServerStream.RecvMsg(m)
}
