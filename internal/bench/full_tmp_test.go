package bench_test

import (
	"context"
	"os"
	"testing"

	"github.com/callstate/callstate/internal/bench"
)

func TestTmpFull(t *testing.T) {
	if os.Getenv("BENCH_FULL") == "" {
		t.Skip()
	}
	err := bench.Run(context.Background(), os.Stdout, bench.Config{Log: os.Stderr, Quick: os.Getenv("BENCH_FULL") == "quick"})
	if err != nil {
		t.Fatal(err)
	}
}
