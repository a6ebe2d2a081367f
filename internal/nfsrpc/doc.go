// Package nfsrpc adds to github.com/vmware/go-nfs-client what it lacks: the NFSv3 procedures GETATTR,
// SETATTR, RENAME, FSSTAT and an UNSTABLE WRITE, issued on the library's exported rpc.Client with argument
// structs encoded by its XDR marshaller and replies decoded by hand; a portmapper GETPORT that honours a
// context; and the ONC RPC record-marking and message helpers the test servers use.
//
// Reply decoders never panic on malformed input: they return ErrShortReply or a *StatusError.
package nfsrpc
