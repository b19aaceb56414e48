"""What the benches share.

- `cli`: the argument parser every bench starts from (`--json`), output, log level.
- `stats`: percentiles and baseline ratios.
- `usage`: what a process uses (CPU seconds, RSS, load average), this one or another.
- `rpc`: JSON lines between a bench's processes (TCP to a server process, stdio to a child).
- `media`: the project's media internals a bench uses, imported there and nowhere else.
- `recording`: a recorder's keyring and spool for a bench (temporary, local).
- `clips`: VP8 clips encoded once, with the frame number drawn into each picture.
- `peers`: aiortc client peers that publish a clip and count what arrives at the RTP level.
"""
