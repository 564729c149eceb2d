"""Experimental rayling APIs (named as in Ray)."""
