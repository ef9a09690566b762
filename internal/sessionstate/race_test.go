//go:build race

package sessionstate

// raceEnabled shrinks the simulations under the race detector: they run on
// one goroutine, so the detector has nothing to find there.
const raceEnabled = true
