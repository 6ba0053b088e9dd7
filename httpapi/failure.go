package httpapi

import (
	"net/http"
)

// A check can fail after the node has applied its fail policy: the
// counter table is full (bucket.ErrStoreFull), a check asks for more than
// a limit allows, the node has not joined its cluster yet, or an error
// came back from the key's owner. Letting such a request through would let
// a client switch its own limits off by making checks fail, so it is
// refused unless the node's fail policy is open (Cluster.FailPolicy): the
// operator who chose availability over limits gets availability here too.

// checkFailedBody is what a client learns of a failed check: nothing of
// the node's state.
var checkFailedBody = []byte(`{"error":"rate limit check failed; try again later"}` + "\n")

// writeCheckFailed answers a request whose check failed: 503 with a
// Retry-After of one second.
func writeCheckFailed(w http.ResponseWriter) {
	w.Header().Set(hdrRetryAfter, "1")
	writeJSONBytes(w, http.StatusServiceUnavailable, checkFailedBody)
}
