"""Every controllable or measurable thing behind one small interface (see base.py)."""
