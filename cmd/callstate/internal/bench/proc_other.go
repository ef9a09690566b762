//go:build !linux

package bench

import "time"

// The process figures come from Linux's /proc and getrusage; elsewhere
// they are reported as unknown.

func rssKiB() int64          { return -1 }
func peakRSSKiB() int64      { return -1 }
func resetPeakRSS() bool     { return false }
func cpuTime() time.Duration { return -1 }

func processCPU(int) time.Duration { return -1 }
