package httpapi

import "github.com/ratemesh/ratemesh/internal/logevery"

// DefaultLogInterval is how often one class of event (a failed check, a bad
// dynamic limit) may log a line: a client repeating a failing request
// must not turn into a flood of log.
const DefaultLogInterval = logevery.DefaultInterval
