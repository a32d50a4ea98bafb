package bench

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/smithy-go/middleware"
)

// RTTEnv, a duration, adds that much latency to every AWS request of the
// bench's SQS rounds, raw and dagq alike, client and worker processes (which
// inherit the environment): a way to see how batching behaves at the round
// trips of AWS (10–30 ms) rather than of a local emulator (~1 ms). The
// requests wait before they are sent; no CPU is spent waiting.
const RTTEnv = "BENCH_RTT"

// rttMiddlewareID names the latency middleware in a stack.
const rttMiddlewareID = "dagq-bench-rtt"

// rtt returns the latency RTTEnv asks for (0: none).
func rtt() (time.Duration, error) {
	s := os.Getenv(RTTEnv)
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 10ms", RTTEnv, s)
	}
	return d, nil
}

// rttAPIOption adds RTTEnv's latency to a stack (a no-op without it).
func rttAPIOption(stack *middleware.Stack) error {
	d, err := rtt()
	if err != nil || d == 0 {
		return err
	}
	if _, ok := stack.Finalize.Get(rttMiddlewareID); ok {
		return nil
	}
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc(rttMiddlewareID,
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return middleware.FinalizeOutput{}, middleware.Metadata{}, ctx.Err()
			}
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}
