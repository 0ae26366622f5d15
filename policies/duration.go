package policies

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time span written as a string ("250ms", "3s", "5m").
type Duration time.Duration

// Off is the duration written "off": a timeout switched off on purpose.
// Set in a policy it wins by precedence like any value, so a route or a
// service can cancel a timeout it would inherit from a broader policy (as
// retries.attempts: 0 cancels retries). Only timeouts.request, timeouts.idle
// and retries.perTryTimeout accept it (CheckDuration); resolve turns it into
// what the data plane reads as "no timeout". It is not a span of time: test
// it with IsOff before reading D.
const Off Duration = math.MinInt64

// offText is how Off is written.
const offText = "off"

// IsOff reports whether the duration is Off.
func (d Duration) IsOff() bool { return d == Off }

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Dur is a helper that returns a pointer to a Duration, for literals in code and tests.
func Dur(d time.Duration) *Duration { x := Duration(d); return &x }

// ParseDuration parses a duration string such as "250ms" or "1h30m", or
// "off" (Off).
func ParseDuration(s string) (Duration, error) {
	if s == offText {
		return Off, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || Duration(d) == Off {
		return 0, fmt.Errorf("invalid duration %q: use a number with a unit, such as 250ms, 3s or 5m", s)
	}
	return Duration(d), nil
}

// String renders the duration in its shortest exact unit: 250ms, 3s, 5m, 1h;
// Off is "off".
func (d Duration) String() string {
	td := time.Duration(d)
	switch {
	case d.IsOff():
		return offText
	case td == 0:
		return "0s"
	case td%time.Hour == 0:
		return strconv.FormatInt(int64(td/time.Hour), 10) + "h"
	case td%time.Minute == 0:
		return strconv.FormatInt(int64(td/time.Minute), 10) + "m"
	case td%time.Second == 0:
		return strconv.FormatInt(int64(td/time.Second), 10) + "s"
	case td%time.Millisecond == 0:
		return strconv.FormatInt(int64(td/time.Millisecond), 10) + "ms"
	default:
		return td.String()
	}
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"3s\"")
	}
	v, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return fmt.Errorf("line %d: duration must be a string such as \"3s\"", n.Line)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}

// Ptr returns a pointer to v, for literals in code and tests.
func Ptr[T any](v T) *T { return &v }
