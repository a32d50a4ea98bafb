package core_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/mock/gomock"

	"github.com/dagq/dagq/core"
	"github.com/dagq/dagq/internal/wire"
	"github.com/dagq/dagq/ports"
)

// How Submit sends a delayed task: a delay of whole seconds within the cap
// is the message's own (envelope version 1, no due time); anything else
// carries its due time in the envelope (version 2) and is sent delayed by
// the whole seconds left, at most the cap.
func TestSubmit_DelaySchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, fixtureOpts{})
		var sent []ports.Message
		f.broker.EXPECT().Send(gomock.Any(), gomock.Any()).DoAndReturn(func(_ context.Context, msgs ...ports.Message) error {
			sent = append(sent, msgs...)
			return nil
		}).AnyTimes()
		now := time.Now()
		cases := []struct {
			name      string
			req       core.Request
			delay     time.Duration
			notBefore time.Time // zero: none
		}{
			{"none", core.Request{}, 0, time.Time{}},
			{"whole seconds within the cap", core.Request{Delay: 15 * time.Minute}, 15 * time.Minute, time.Time{}},
			{"fraction of a second", core.Request{Delay: 300 * time.Millisecond}, 0, now.Add(300 * time.Millisecond)},
			{"seconds and a fraction", core.Request{Delay: 2500 * time.Millisecond}, 2 * time.Second, now.Add(2500 * time.Millisecond)},
			{"beyond the cap", core.Request{Delay: 3 * time.Hour}, 15 * time.Minute, now.Add(3 * time.Hour)},
			{"absolute, near", core.Request{NotBefore: now.Add(10700 * time.Millisecond)}, 10 * time.Second, now.Add(10700 * time.Millisecond)},
			{"absolute, far", core.Request{NotBefore: now.Add(48 * time.Hour)}, 15 * time.Minute, now.Add(48 * time.Hour)},
			{"absolute, past", core.Request{NotBefore: now.Add(-time.Hour)}, 0, time.Time{}},
			{"a year", core.Request{Delay: core.MaxTaskDelay}, 15 * time.Minute, now.Add(core.MaxTaskDelay)},
		}
		for _, tc := range cases {
			sent = nil
			tc.req.Task = "t"
			_, err := f.client.Submit(context.Background(), tc.req)
			require.NoError(t, err, tc.name)
			require.Len(t, sent, 1)
			require.Equal(t, tc.delay, sent[0].Delay, tc.name)
			env, err := wire.Decode(sent[0].Body)
			require.NoError(t, err)
			require.True(t, tc.notBefore.Equal(env.NotBefore), "%s: not_before %v, want %v", tc.name, env.NotBefore, tc.notBefore)
			wantV := 1
			if !tc.notBefore.IsZero() {
				wantV = 2
			}
			require.Equal(t, wantV, env.Version, tc.name)
		}

		// A lowered cap.
		c, err := core.NewClient(core.ClientOptions{Ports: core.Ports{Broker: f.broker, Results: f.results, NoCancel: true},
			MaxDelay: 8 * time.Second, Logger: quietLogger()})
		require.NoError(t, err)
		defer c.Close()
		sent = nil
		_, err = c.Submit(context.Background(), core.Request{Task: "t", Delay: 20 * time.Second, Result: core.ResultNone})
		require.NoError(t, err)
		require.Equal(t, 8*time.Second, sent[0].Delay)
	})
}
