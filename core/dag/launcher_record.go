package dag

import (
	"context"
	"fmt"
)

// Record returns run runID's record as stored, with one StateStore read and
// nothing else: no run task status, no heartbeat, no step results. It is
// what a display that refreshes often (the dashboard, dagq ui) reads, at one
// request per refresh; Status costs up to three more for a run that is not
// finished, and also sees runs whose worker died or whose run task ended
// without writing the record. A run unknown to the StateStore fails with
// ErrRunNotFound.
func (l *Launcher) Record(ctx context.Context, runID string) (RunRecord, error) {
	rec, err := l.read(ctx, runID)
	if err != nil {
		return RunRecord{}, fmt.Errorf("dagq: record: %w", err)
	}
	return rec, nil
}
