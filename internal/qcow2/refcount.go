package qcow2

import "encoding/binary"

// refcountGet returns entry i of a refcount block whose entries are 1<<order bits wide. Sub-byte entries
// are packed least significant bits first, as QEMU does.
func refcountGet(block []byte, i int64, order uint32) uint64 {
	switch order {
	case 3:
		return uint64(block[i])
	case 4:
		return uint64(binary.BigEndian.Uint16(block[i*2:]))
	case 5:
		return uint64(binary.BigEndian.Uint32(block[i*4:]))
	case 6:
		return binary.BigEndian.Uint64(block[i*8:])
	default:
		bits := int64(1) << order
		bit := i * bits
		mask := byte(1<<bits - 1)
		return uint64(block[bit/8] >> (bit % 8) & mask)
	}
}

// refcountSet stores v (which must fit in 1<<order bits) as entry i of a refcount block.
func refcountSet(block []byte, i int64, order uint32, v uint64) {
	switch order {
	case 3:
		block[i] = byte(v)
	case 4:
		binary.BigEndian.PutUint16(block[i*2:], uint16(v))
	case 5:
		binary.BigEndian.PutUint32(block[i*4:], uint32(v))
	case 6:
		binary.BigEndian.PutUint64(block[i*8:], v)
	default:
		bits := int64(1) << order
		bit := i * bits
		shift := bit % 8
		mask := byte(1<<bits-1) << shift
		block[bit/8] = block[bit/8]&^mask | byte(v)<<shift&mask
	}
}

// refcountMax is the largest value an entry of 1<<order bits holds.
func refcountMax(order uint32) uint64 {
	if order == 6 {
		return ^uint64(0)
	}
	return 1<<(uint64(1)<<order) - 1
}

// ceilDiv returns ⌈a/b⌉ for a ≥ 0, b > 0.
func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
