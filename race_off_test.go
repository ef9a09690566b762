//go:build !race

package callstate_test

const raceEnabled = false
