"""The lab: a fleet of real OpenSSH hosts on loopback, each with its own (broken) GPU stack on disk.

`remediate lab up` turns scenario files (`scenario`) into templates (`build`) and starts one sshd per
host inside its own mount namespace (`fleet`, `sshd`); the rest of the tool probes them like real hosts.
"""
