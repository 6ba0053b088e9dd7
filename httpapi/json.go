package httpapi

import (
	"encoding/json"
	"net/http"
)

// ErrorResponse is the body of every error answer of the middleware, and
// of the node's HTTP API: {"error": message}.
type ErrorResponse struct {
	Error string `json:"error"`
}

// WriteJSON answers with status and v encoded as Echo's c.JSON encodes
// it: compact, newline-terminated, Content-Type application/json unless a
// Content-Type is set already. An encoding error is returned before
// anything is written, so that the caller can still answer.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeJSONBytes(w, status, append(b, '\n'))
}

// writeJSONBytes answers with status and the encoded JSON b.
func writeJSONBytes(w http.ResponseWriter, status int, b []byte) error {
	if h := w.Header(); len(h[hdrContentType]) == 0 {
		h.Set(hdrContentType, "application/json")
	}
	w.WriteHeader(status)
	_, err := w.Write(b)
	return err
}

// hdrContentType is the canonical Content-Type header name.
const hdrContentType = "Content-Type"
