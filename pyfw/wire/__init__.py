"""Wire formats: views over bytearrays, checksums and the packets Linux
builds (ICMP errors, RSTs, ARP replies, fragments), one module per
protocol.  Sans-IO: nothing here sends, reads a clock or raises on a
malformed packet in the parse/validate paths."""
