package main

// testRecvHook, when a test sets it, is given to the fleet of every run
// (fleetOptions.recvHook).
var testRecvHook func(p *proxy, msg any)
