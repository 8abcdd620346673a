"""Built-in DP mechanisms (plugins). One file per mechanism, one YAML per mechanism in conf/mechanism/."""
