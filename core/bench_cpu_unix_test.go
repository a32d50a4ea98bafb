//go:build unix

package core_test

import (
	"syscall"
	"time"
)

// procUsage is the process's CPU time so far (user and system) and its
// minor page faults (first touches of fresh memory).
type procUsage struct {
	user, sys time.Duration
	faults    int64
}

func usage() procUsage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return procUsage{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()), int64(ru.Minflt)}
}
