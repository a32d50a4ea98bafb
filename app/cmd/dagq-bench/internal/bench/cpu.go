package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, 100 on
// every Linux architecture Go supports.
const userHZ = 100

// procCPU returns the user+system CPU time process pid has used so far,
// from /proc/<pid>/stat (Linux; 10 ms resolution).
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid … : comm may hold spaces and parentheses, so
	// split after its last ')'. utime and stime are fields 14 and 15.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')' in %q", pid, s)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// selfCPU returns the user+system CPU time this process has used so far
// (getrusage RUSAGE_SELF: every thread; 0 where it is not available).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// EmulatorPIDsEnv names the emulator processes whose CPU the SQS rounds
// report ("name:pid,name:pid"; scripts/emulators.sh env sets it). The
// emulators share the machine's cores with dagq, so their CPU per task is
// part of what bounds the throughput measured here.
const EmulatorPIDsEnv = "BENCH_EMULATOR_PIDS"

// emulatorCPU is the CPU one emulator process used.
type emulatorCPU struct {
	name string
	pid  int
	cpu  time.Duration
}

type emulatorCPUs []emulatorCPU

// emulatorsCPU reads the CPU used so far by each process EmulatorPIDsEnv
// names; processes that cannot be read are left out.
func emulatorsCPU() emulatorCPUs {
	var out emulatorCPUs
	for _, item := range strings.Split(os.Getenv(EmulatorPIDsEnv), ",") {
		name, p, ok := strings.Cut(item, ":")
		pid, err := strconv.Atoi(p)
		if !ok || err != nil || pid <= 0 {
			continue
		}
		if cpu, err := procCPU(pid); err == nil {
			out = append(out, emulatorCPU{name: name, pid: pid, cpu: cpu})
		}
	}
	return out
}

// since returns the CPU each process used since before (processes missing
// from either are left out).
func (e emulatorCPUs) since(before emulatorCPUs) emulatorCPUs {
	var out emulatorCPUs
	for _, a := range e {
		for _, b := range before {
			if a.pid == b.pid {
				out = append(out, emulatorCPU{name: a.name, pid: a.pid, cpu: a.cpu - b.cpu})
			}
		}
	}
	return out
}

// perTask formats each process's CPU per task of n.
func (e emulatorCPUs) perTask(n int) string {
	parts := make([]string, len(e))
	for i, c := range e {
		parts[i] = fmt.Sprintf("%s %.3f ms/task", c.name, float64(c.cpu.Microseconds())/1000/float64(n))
	}
	return strings.Join(parts, ", ")
}
