"""`python -m appliance`: the same as the `ampgate` command."""
from gevent import monkey

monkey.patch_all()  # before anything else imports socket, ssl, threading or time

from appliance.cli import main  # noqa: E402

raise SystemExit(main())
