// Package apiclient is a Go client of the openvair API generated with oapi-codegen (v2.8.2) from the
// OpenAPI document the server serves at /openapi.json. It is used by refserver's tests to prove that the
// document matches the server; TestAPIClientUpToDate regenerates it from the live document and fails when
// the committed code differs (run it with OPENVAIR_UPDATE_APICLIENT=1 to rewrite the file).
package apiclient
