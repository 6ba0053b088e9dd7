package rls

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// File is one config file's name and content.
type File struct {
	Name string
	Data []byte
}

// Limits on what the loader reads, so that a wrong path (a log directory,
// a device) fails clearly rather than filling memory.
const (
	// MaxConfigFileBytes bounds one config file.
	MaxConfigFileBytes = 16 << 20
	// MaxConfigFiles bounds the files of a config directory.
	MaxConfigFiles = 4096
)

// Parse builds a config from files, each one domain in
// envoyproxy/ratelimit's YAML format. A domain in two files is refused,
// as the reference does by default. Errors are *ConfigError.
func Parse(files ...File) (*Config, error) {
	if len(files) == 0 {
		return nil, &ConfigError{Msg: "no config files"}
	}
	c := &Config{domains: map[string]*domain{}}
	for _, f := range files {
		d, err := parseFile(f.Name, f.Data)
		if err != nil {
			return nil, err
		}
		if prev, dup := c.domains[d.name]; dup {
			return nil, &ConfigError{File: f.Name, Msg: fmt.Sprintf("duplicate domain '%s' in config file (already in %s)", d.name, prev.file)}
		}
		c.domains[d.name] = d
		c.files = append(c.files, f.Name)
	}
	c.digest = digest(files)
	return c, nil
}

// LoadPath reads path: one YAML file, or a directory whose *.yaml and
// *.yml files (not those whose names start with a dot, not
// subdirectories) make up the config. Symbolic links are followed, so a
// Kubernetes ConfigMap volume works as mounted.
func LoadPath(path string) (*Config, error) {
	files, err := ReadPath(path)
	if err != nil {
		return nil, err
	}
	return Parse(files...)
}

// ReadPath reads the files LoadPath would parse, sorted by name.
func ReadPath(path string) ([]File, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &ConfigError{File: path, Msg: "cannot read: " + unwrapPath(err)}
	}
	if !fi.IsDir() {
		if !fi.Mode().IsRegular() {
			// Reading a FIFO or a device could block or never end.
			return nil, &ConfigError{File: path, Msg: "not a regular file (" + fi.Mode().Type().String() + ")"}
		}
		f, err := readFile(path)
		if err != nil {
			return nil, err
		}
		return []File{f}, nil
	}
	names, err := configNames(path)
	if err != nil {
		return nil, err
	}
	files := make([]File, len(names))
	for i, name := range names {
		if files[i], err = readFile(filepath.Join(path, name)); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// configNames lists the config files of directory dir, sorted.
func configNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, &ConfigError{File: dir, Msg: "cannot list the directory: " + unwrapPath(err)}
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		ext := strings.ToLower(filepath.Ext(name))
		if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, name)) // follows links
		if err != nil {
			return nil, &ConfigError{File: filepath.Join(dir, name), Msg: "cannot read: " + unwrapPath(err)}
		}
		if fi.IsDir() {
			continue
		}
		if !fi.Mode().IsRegular() {
			return nil, &ConfigError{File: filepath.Join(dir, name), Msg: "not a regular file (" + fi.Mode().Type().String() + ")"}
		}
		names = append(names, name)
	}
	switch {
	case len(names) == 0:
		return nil, &ConfigError{File: dir, Msg: "the directory has no .yaml or .yml files"}
	case len(names) > MaxConfigFiles:
		return nil, &ConfigError{File: dir, Msg: fmt.Sprintf("the directory has %d config files, at most %d", len(names), MaxConfigFiles)}
	}
	sort.Strings(names)
	return names, nil
}

// readFile reads one config file, at most MaxConfigFileBytes of it.
func readFile(path string) (File, error) {
	f, err := os.Open(path)
	if err != nil {
		return File{}, &ConfigError{File: path, Msg: "cannot read: " + unwrapPath(err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigFileBytes+1))
	if err != nil {
		return File{}, &ConfigError{File: path, Msg: "cannot read: " + unwrapPath(err)}
	}
	if len(data) > MaxConfigFileBytes {
		return File{}, &ConfigError{File: path, Msg: fmt.Sprintf("larger than %d bytes", MaxConfigFileBytes)}
	}
	return File{Name: path, Data: data}, nil
}

// unwrapPath is an I/O error without the path, which ConfigError names.
func unwrapPath(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

// digest identifies a set of files by their names and contents, so that a
// reload can tell that nothing changed without parsing.
func digest(files []File) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	for _, f := range files {
		for _, b := range [][]byte{[]byte(f.Name), f.Data} {
			binary.BigEndian.PutUint64(n[:], uint64(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
