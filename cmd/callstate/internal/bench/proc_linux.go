package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procStatusKiB returns a "kB" field of /proc/self/status (VmRSS, VmHWM),
// in KiB, or -1 when it cannot be read.
func procStatusKiB(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return -1
			}
			return v
		}
	}
	return -1
}

// rssKiB is the process's resident set size in KiB, -1 if unknown.
func rssKiB() int64 { return procStatusKiB("VmRSS") }

// peakRSSKiB is the process's peak resident set size in KiB since it
// started or since the last resetPeakRSS, -1 if unknown.
func peakRSSKiB() int64 { return procStatusKiB("VmHWM") }

// resetPeakRSS resets the peak resident set size to the current one
// (writing 5 to clear_refs, Linux 4.0 and later); it reports whether it
// could.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// cpuTime is the CPU time (user and system) the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU is the CPU time (user and system) that process pid has used
// so far, from /proc/pid/stat; -1 when it cannot be read.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return -1
	}
	// The command name (field 2) may hold spaces: fields are counted from
	// the closing parenthesis; utime and stime are fields 14 and 15.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	const ticks = 100 // USER_HZ, 100 on every Linux architecture Go supports
	return time.Duration(u+s) * time.Second / ticks
}
