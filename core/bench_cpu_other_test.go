//go:build !unix

package core_test

import "time"

// procUsage is not measured on this platform.
type procUsage struct {
	user, sys time.Duration
	faults    int64
}

func usage() procUsage { return procUsage{} }
