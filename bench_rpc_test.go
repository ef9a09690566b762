package callstate_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/callstate/callstate"
)

// BenchmarkRpcRoundTrip measures one RPC call, request to answer, between
// two participants of the real server.
func BenchmarkRpcRoundTrip(b *testing.B) {
	_, _, caller, callee := rpcPair(b)
	if err := callee.RegisterRpcMethod("echo", func(_ context.Context, inv callstate.RpcInvocation) (string, error) {
		return inv.Payload, nil
	}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.ResetTimer()
	for b.Loop() {
		if _, err := caller.PerformRpc(ctx, "b", "echo", "ping", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStreamThroughput measures 16 MiB through a StreamWriter and a
// ByteStreamReader on the real server.
func BenchmarkStreamThroughput(b *testing.B) {
	const size = 16 << 20
	_, _, tx, rx := rpcPair(b)
	done := make(chan error, 1)
	if err := rx.RegisterByteStreamHandler("bench", func(br *callstate.ByteStreamReader) {
		_, err := io.Copy(io.Discard, br)
		done <- err
	}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		w, err := tx.StreamBytes(ctx, &callstate.StreamOptions{Topic: "bench", Size: size})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(w, &patternReader{left: size}); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}
