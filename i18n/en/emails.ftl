# Emails the built-in CA sends. Values such as serial numbers, fingerprints,
# names and file names are put in by the code, never translated.

## Shared

email-greeting = Hello,
email-greeting-name = Hello { $name },
email-label-order = Order

## Fulfillment email: the certificate, to the domain administrator

fulfillment-subject = Your SSL certificate for { $domain } is ready (order { $order })
fulfillment-intro = { $ca } has issued the SSL/TLS certificate for { $domain }.
fulfillment-label-common-name = Common name
fulfillment-label-names = Names
fulfillment-label-serial = Serial number
fulfillment-label-valid-from = Valid from
fulfillment-label-valid-until = Valid until
fulfillment-label-fingerprint = SHA-256 fingerprint
fulfillment-label-issuer = Issuer
fulfillment-label-key-type = Key type
fulfillment-attached = Attached
fulfillment-attached-certificate = the certificate alone
fulfillment-attached-chain = the intermediate certificate(s)
fulfillment-attached-fullchain = the certificate followed by the chain
fulfillment-install = Installing it
# Stands in for a file name in the nginx and Apache lines, between < and >.
fulfillment-private-key = your private key
fulfillment-key-note = The private key never left your server: use the key you made the CSR with.
fulfillment-no-copy = The desk that ordered this certificate does not keep a copy of it. If you want it to hold the certificate for you, import it in SSL > Certificates.

## Approval email: the request, to the domain's approver

approval-subject = Approve the SSL certificate request for { $domain } (order { $order })
approval-intro = { $requester } asked { $ca } for an SSL/TLS certificate for:
approval-recipient = The certificate will be sent to: { $admin }
approval-reason = You receive this message because you are an administrator of the domain.
approval-open = To approve or decline the request, open:
approval-link = Review the request and approve or decline it
approval-expiry = The link works once and expires on { $expires }.
approval-unexpected = If you did not expect this request, decline it or ignore this message.
