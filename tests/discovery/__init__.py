"""LAN discovery (mDNS) between real daemons in private network namespaces."""
