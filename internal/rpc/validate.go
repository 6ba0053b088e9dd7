package rpc

import "io"

// valueSize returns the length in bytes of the msgpack value at the start of
// b, checking that every length it announces fits in b and that it nests at
// most depth levels. msgpack's reflection allocates lists by their
// announced length (and recurses without bound), so it only ever sees
// bytes that passed this check.
func valueSize(b []byte, depth int) (int, error) {
	if len(b) == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	c := b[0]
	var head, body, elems int // bytes of header, of payload, and nested values
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return 1, nil
	case c >= 0x80 && c <= 0x8f:
		head, elems = 1, 2*int(c&0x0f)
	case c >= 0x90 && c <= 0x9f:
		head, elems = 1, int(c&0x0f)
	case c >= 0xa0 && c <= 0xbf:
		head, body = 1, int(c&0x1f)
	case c == 0xc4 || c == 0xd9: // bin8, str8
		head = 2
	case c == 0xc5 || c == 0xda: // bin16, str16
		head = 3
	case c == 0xc6 || c == 0xdb: // bin32, str32
		head = 5
	case c == 0xc7: // ext8: length, type
		head = 3
	case c == 0xc8:
		head = 4
	case c == 0xc9:
		head = 6
	case c == 0xca:
		head, body = 1, 4
	case c == 0xcb:
		head, body = 1, 8
	case c >= 0xcc && c <= 0xcf: // uint8..64
		head, body = 1, 1<<(c-0xcc)
	case c >= 0xd0 && c <= 0xd3: // int8..64
		head, body = 1, 1<<(c-0xd0)
	case c >= 0xd4 && c <= 0xd8: // fixext1..16: type + data
		head, body = 2, 1<<(c-0xd4)
	case c == 0xdc || c == 0xde: // array16, map16
		head = 3
	case c == 0xdd || c == 0xdf: // array32, map32
		head = 5
	default: // 0xc1 is never used
		return 0, protoErr("invalid msgpack code 0x%02x", c)
	}
	if len(b) < head {
		return 0, io.ErrUnexpectedEOF
	}
	// Lengths that follow the code.
	switch c {
	case 0xc4, 0xd9, 0xc7:
		body = int(b[1])
	case 0xc5, 0xda, 0xc8:
		body = int(b[1])<<8 | int(b[2])
	case 0xc6, 0xdb, 0xc9:
		body = int(uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4]))
	case 0xdc, 0xde:
		elems = int(b[1])<<8 | int(b[2])
	case 0xdd, 0xdf:
		elems = int(uint32(b[1])<<24 | uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4]))
	}
	if c == 0xde || c == 0xdf {
		elems *= 2
	}
	if body > len(b)-head {
		return 0, io.ErrUnexpectedEOF
	}
	size := head + body
	if elems == 0 {
		return size, nil
	}
	if depth <= 0 {
		return 0, protoErr("msgpack nested too deep")
	}
	if elems > len(b)-size { // every value takes at least one byte
		return 0, io.ErrUnexpectedEOF
	}
	for range elems {
		n, err := valueSize(b[size:], depth-1)
		if err != nil {
			return 0, err
		}
		size += n
	}
	return size, nil
}
