// Package ui is the node's dashboard: one page, its script and style, and
// the uPlot chart library, embedded in the binary so that the page needs
// no network but the node's own /v1/stats. nodeapi.RegisterService serves
// it at /ui/.
package ui

import (
	"embed"
	"io/fs"
)

// files are the page and its assets. vendor/uplot is uPlot 1.6.32 as the
// npm registry ships it (dist/uPlot.iife.min.js, dist/uPlot.min.css and
// its MIT LICENSE, unchanged).
//
//go:embed index.html app.js style.css vendor
var files embed.FS

// FS returns the dashboard's files, index.html at the root.
func FS() fs.FS { return files }
