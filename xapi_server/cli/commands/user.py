"""user-password-change: the logged-in user's own password."""
from __future__ import annotations

from ..table import command


@command("user-password-change", reqd=("new",), optional=("old",),
         help="Change the password of the logged-in user. The old password is needed "
              "unless you are root.")
async def user_password_change(ctx):
    await ctx.call("session.change_password", ctx.param("old", ""), ctx.reqd("new"))
