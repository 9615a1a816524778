"""aiosmtpd's Maildir handler, as a server offering PIPELINING (RFC 2920)
the way postfix and most production servers do, and refusing one mailbox.

aiosmtpd reads pipelined commands in order but does not offer the
extension, so the desk would talk to it one command at a time.
"""

from aiosmtpd.handlers import Mailbox


class PipeliningMailbox(Mailbox):
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING", responses[-1]]

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refused@"):
            return "550 5.1.1 <%s>: mailbox unavailable" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"
