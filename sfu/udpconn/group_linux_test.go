package udpconn

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestListenGroupSpreadsPeersAndKeepsEachOnOneSocket(t *testing.T) {
	const sockets, peers, perPeer = 3, 32, 5
	group, err := ListenGroup("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, sockets)
	if err != nil {
		t.Fatal(err)
	}
	addr := group[0].LocalAddr().(*net.UDPAddr)
	for _, c := range group[1:] {
		if c.LocalAddr().String() != addr.String() {
			t.Fatalf("group socket on %s, want %s", c.LocalAddr(), addr)
		}
	}
	var mu sync.Mutex
	seenOn := map[string]map[int]int{} // peer -> socket -> datagrams
	var wg sync.WaitGroup
	for i, c := range group {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for {
				_, from, err := c.ReadFromAddrPort(buf)
				if err != nil {
					return
				}
				mu.Lock()
				if seenOn[from.String()] == nil {
					seenOn[from.String()] = map[int]int{}
				}
				seenOn[from.String()][i]++
				mu.Unlock()
			}
		}()
	}
	for range peers {
		p, err := net.DialUDP("udp4", nil, addr)
		if err != nil {
			t.Fatal(err)
		}
		for range perPeer {
			if _, err := p.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		_ = p.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		total := 0
		for _, bySocket := range seenOn {
			for _, n := range bySocket {
				total += n
			}
		}
		mu.Unlock()
		if total == peers*perPeer {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d datagrams arrived", total, peers*perPeer)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, c := range group {
		_ = c.Close()
	}
	wg.Wait()
	used := map[int]bool{}
	for peer, bySocket := range seenOn {
		if len(bySocket) != 1 {
			t.Fatalf("peer %s was split over sockets %v", peer, bySocket)
		}
		for i := range bySocket {
			used[i] = true
		}
	}
	if len(used) < 2 {
		t.Fatalf("%d peers all landed on one socket of %d", peers, sockets)
	}
}

func TestListenGroupRefusesAnAddressInUse(t *testing.T) {
	first, err := ListenGroup("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range first {
			_ = c.Close()
		}
	}()
	addr := first[0].LocalAddr().(*net.UDPAddr)
	for _, n := range []int{1, 2} {
		if second, err := ListenGroup("udp4", addr, n); !errors.Is(err, syscall.EADDRINUSE) {
			for _, c := range second {
				_ = c.Close()
			}
			t.Fatalf("a group of %d joined a running group's address: %v", n, err)
		}
	}
	if plain, err := net.ListenUDP("udp4", addr); !errors.Is(err, syscall.EADDRINUSE) {
		if plain != nil {
			_ = plain.Close()
		}
		t.Fatalf("a plain socket bound a group's address: %v", err)
	}
}
