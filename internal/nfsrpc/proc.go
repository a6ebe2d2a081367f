package nfsrpc

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vmware/go-nfs-client/nfs/rpc"
)

// NFSv3 procedure numbers issued by this package.
const (
	ProcGetAttr = 1
	ProcSetAttr = 2
	ProcRead    = 6
	ProcWrite   = 7
	ProcRename  = 14
	ProcFSStat  = 18
	ProcCommit  = 21
)

// NFSv3 file types (ftype3).
const (
	TypeRegular   = 1
	TypeDirectory = 2
)

// Write stability levels (stable_how).
const (
	Unstable = 0
	DataSync = 1
	FileSync = 2
)

// MaxFH is the largest NFSv3 file handle.
const MaxFH = 64

// Caller issues one RPC call and returns the result body after the accept status; *rpc.Client and
// *nfs.Target satisfy it.
type Caller interface {
	Call(call any) (io.ReadSeeker, error)
}

// StatusError is a non-zero nfsstat3 returned by a procedure. It matches os.ErrNotExist, os.ErrExist and
// os.ErrPermission with errors.Is where the status means that.
type StatusError struct {
	Proc   uint32
	Status uint32
}

// NFSv3 status values that callers test for.
const (
	ErrPerm     = 1
	ErrNoEnt    = 2
	ErrIO       = 5
	ErrAcces    = 13
	ErrExist    = 17
	ErrNotDir   = 20
	ErrIsDir    = 21
	ErrInval    = 22
	ErrFBig     = 27
	ErrNoSpc    = 28
	ErrROFS     = 30
	ErrNotEmpty = 66
	ErrDQuot    = 69
	ErrStale    = 70
)

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("nfs procedure %d: status %d", e.Proc, e.Status)
}

// Is matches the os error values that correspond to the status.
func (e *StatusError) Is(target error) bool {
	switch e.Status {
	case ErrNoEnt, ErrStale:
		return target == os.ErrNotExist
	case ErrExist:
		return target == os.ErrExist
	case ErrPerm, ErrAcces:
		return target == os.ErrPermission
	}
	return false
}

// Attr is the part of fattr3 openvair uses.
type Attr struct {
	Type   uint32
	Mode   uint32
	UID    uint32
	GID    uint32
	Size   uint64
	Used   uint64
	FileID uint64
	Mtime  time.Time
}

// FSStat is an FSSTAT3resok.
type FSStat struct {
	TotalBytes, FreeBytes, AvailBytes uint64
	TotalFiles, FreeFiles, AvailFiles uint64
}

func header(auth rpc.Auth, proc uint32) rpc.Header {
	return rpc.Header{Rpcvers: 2, Prog: NFSProg, Vers: NFSVers, Proc: proc, Cred: auth, Verf: rpc.AuthNull}
}

// Argument structs, encoded by the library's XDR marshaller (github.com/rasky/go-xdr): fields in order,
// uint32/uint64 as themselves, []byte and string as variable-length opaque.
type (
	fhArgs struct {
		rpc.Header
		FH []byte
	}
	setattrSizeArgs struct {
		rpc.Header
		FH []byte
		// sattr3 with only the size set: set_mode, set_uid, set_gid = FALSE; set_size = TRUE, size;
		// set_atime, set_mtime = DONT_CHANGE; then sattrguard3 check = FALSE.
		SetMode, SetUID, SetGID, SetSize uint32
		Size                             uint64
		SetAtime, SetMtime               uint32
		Guard                            uint32
	}
	setattrOwnerArgs struct {
		rpc.Header
		FH []byte
		// sattr3 with only the owner set: set_mode = FALSE; set_uid = TRUE, uid; set_gid = TRUE, gid;
		// set_size = FALSE; set_atime, set_mtime = DONT_CHANGE; then sattrguard3 check = FALSE.
		SetMode            uint32
		SetUID             uint32
		UID                uint32
		SetGID             uint32
		GID                uint32
		SetSize            uint32
		SetAtime, SetMtime uint32
		Guard              uint32
	}
	renameArgs struct {
		rpc.Header
		FromDir  []byte
		FromName string
		ToDir    []byte
		ToName   string
	}
	readArgs struct {
		rpc.Header
		FH     []byte
		Offset uint64
		Count  uint32
	}
	writeArgs struct {
		rpc.Header
		FH     []byte
		Offset uint64
		Count  uint32
		Stable uint32
		Data   []byte
	}
	commitArgs struct {
		rpc.Header
		FH     []byte
		Offset uint64
		Count  uint32
	}
)

// call issues c and returns a decoder positioned after a zero nfsstat3.
func call(c Caller, proc uint32, args any) (*Decoder, error) {
	res, err := c.Call(args)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(res)
	if err != nil {
		return nil, err
	}
	d := NewDecoder(body)
	status := d.Uint32()
	if err := d.Err(); err != nil {
		return nil, err
	}
	if status != 0 {
		return nil, &StatusError{Proc: proc, Status: status}
	}
	return d, nil
}

// decodeFattr reads a fattr3.
func decodeFattr(d *Decoder) Attr {
	var a Attr
	a.Type = d.Uint32()
	a.Mode = d.Uint32()
	d.Uint32() // nlink
	a.UID = d.Uint32()
	a.GID = d.Uint32()
	a.Size = d.Uint64()
	a.Used = d.Uint64()
	d.Skip(8) // rdev
	d.Skip(8) // fsid
	a.FileID = d.Uint64()
	d.Skip(8) // atime
	sec, nsec := d.Uint32(), d.Uint32()
	a.Mtime = time.Unix(int64(sec), int64(nsec))
	d.Skip(8) // ctime
	return a
}

// decodePostOpAttr reads a post_op_attr; ok is false when the server sent none.
func decodePostOpAttr(d *Decoder) (Attr, bool) {
	if !d.Bool() {
		return Attr{}, false
	}
	return decodeFattr(d), true
}

// skipWcc reads a wcc_data.
func skipWcc(d *Decoder) {
	if d.Bool() { // pre_op_attr: size, mtime, ctime
		d.Skip(24)
	}
	decodePostOpAttr(d)
}

// GetAttr returns the attributes of the object fh.
func GetAttr(c Caller, auth rpc.Auth, fh []byte) (Attr, error) {
	d, err := call(c, ProcGetAttr, &fhArgs{header(auth, ProcGetAttr), fh})
	if err != nil {
		return Attr{}, err
	}
	return DecodeGetAttrOK(d)
}

// DecodeGetAttrOK decodes the body of a successful GETATTR reply (after the status).
func DecodeGetAttrOK(d *Decoder) (Attr, error) {
	a := decodeFattr(d)
	return a, d.Err()
}

// SetSize truncates or extends the file fh to size bytes (SETATTR with only the size set).
func SetSize(c Caller, auth rpc.Auth, fh []byte, size uint64) error {
	_, err := call(c, ProcSetAttr, &setattrSizeArgs{Header: header(auth, ProcSetAttr), FH: fh, SetSize: 1, Size: size})
	return err
}

// SetOwner gives the file fh to uid and gid (SETATTR with only the owner set). The server decides whether
// the caller may: root without root squashing may.
func SetOwner(c Caller, auth rpc.Auth, fh []byte, uid, gid uint32) error {
	_, err := call(c, ProcSetAttr, &setattrOwnerArgs{Header: header(auth, ProcSetAttr), FH: fh, SetUID: 1, UID: uid, SetGID: 1, GID: gid})
	return err
}

// Rename renames fromName in fromDir to toName in toDir, replacing an existing target.
func Rename(c Caller, auth rpc.Auth, fromDir []byte, fromName string, toDir []byte, toName string) error {
	_, err := call(c, ProcRename, &renameArgs{header(auth, ProcRename), fromDir, fromName, toDir, toName})
	return err
}

// GetFSStat returns the space figures of the file system holding fh.
func GetFSStat(c Caller, auth rpc.Auth, fh []byte) (FSStat, error) {
	d, err := call(c, ProcFSStat, &fhArgs{header(auth, ProcFSStat), fh})
	if err != nil {
		return FSStat{}, err
	}
	return DecodeFSStatOK(d)
}

// DecodeFSStatOK decodes the body of a successful FSSTAT reply (after the status).
func DecodeFSStatOK(d *Decoder) (FSStat, error) {
	decodePostOpAttr(d)
	var s FSStat
	s.TotalBytes = d.Uint64()
	s.FreeBytes = d.Uint64()
	s.AvailBytes = d.Uint64()
	s.TotalFiles = d.Uint64()
	s.FreeFiles = d.Uint64()
	s.AvailFiles = d.Uint64()
	d.Uint32() // invarsec
	return s, d.Err()
}

// Read reads up to count bytes of fh at offset; eof reports the end of the file.
func Read(c Caller, auth rpc.Auth, fh []byte, offset uint64, count uint32) (data []byte, eof bool, err error) {
	d, err := call(c, ProcRead, &readArgs{header(auth, ProcRead), fh, offset, count})
	if err != nil {
		return nil, false, err
	}
	return DecodeReadOK(d, count)
}

// DecodeReadOK decodes the body of a successful READ reply (after the status) for a request of count bytes.
func DecodeReadOK(d *Decoder, count uint32) ([]byte, bool, error) {
	decodePostOpAttr(d)
	n := d.Uint32()
	eof := d.Bool()
	data := d.Opaque(int(count))
	if err := d.Err(); err != nil {
		return nil, false, err
	}
	if uint32(len(data)) != n {
		return nil, false, fmt.Errorf("nfsrpc: READ count %d but %d data bytes", n, len(data))
	}
	return data, eof, nil
}

// WriteResult is what a WRITE reports.
type WriteResult struct {
	Count     uint32
	Committed uint32
	Verf      uint64
}

// Write writes data to fh at offset with the given stability. The server may write fewer bytes.
func Write(c Caller, auth rpc.Auth, fh []byte, offset uint64, data []byte, stable uint32) (WriteResult, error) {
	d, err := call(c, ProcWrite, &writeArgs{header(auth, ProcWrite), fh, offset, uint32(len(data)), stable, data})
	if err != nil {
		return WriteResult{}, err
	}
	return DecodeWriteOK(d, uint32(len(data)))
}

// DecodeWriteOK decodes the body of a successful WRITE reply (after the status) for a request of count bytes.
func DecodeWriteOK(d *Decoder, count uint32) (WriteResult, error) {
	skipWcc(d)
	var r WriteResult
	r.Count = d.Uint32()
	r.Committed = d.Uint32()
	r.Verf = d.Uint64()
	if err := d.Err(); err != nil {
		return r, err
	}
	if r.Count > count {
		return r, fmt.Errorf("nfsrpc: WRITE reports %d bytes written of %d sent", r.Count, count)
	}
	return r, nil
}

// Commit flushes unstable writes of fh to stable storage and returns the server's write verifier.
func Commit(c Caller, auth rpc.Auth, fh []byte) (uint64, error) {
	d, err := call(c, ProcCommit, &commitArgs{header(auth, ProcCommit), fh, 0, 0})
	if err != nil {
		return 0, err
	}
	skipWcc(d)
	v := d.Uint64()
	return v, d.Err()
}

// ErrVerifierChanged is returned when the server's write verifier changed between WRITE and COMMIT (it
// restarted and may have lost unstable data).
var ErrVerifierChanged = errors.New("nfsrpc: server write verifier changed, unstable data may be lost")

// Null calls the NFS NULL procedure: a cheap check that the connection and the server are alive.
func Null(c Caller, auth rpc.Auth) error {
	_, err := c.Call(&struct{ rpc.Header }{header(auth, 0)})
	return err
}
