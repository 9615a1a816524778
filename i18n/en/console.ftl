nav-main = Main navigation
nav-security = Security
nav-ssl = SSL
nav-orders = Orders
nav-sign-out = Sign out

login-title = Sign in to certdesk
login-email = Email
login-password = Password
login-submit = Sign in
login-failed = The email or password is not correct.

back-to-orders = Back to SSL orders
error-title = Something went wrong
error-not-found = Not found
error-forbidden = Not allowed
error-order-not-found = There is no such order in your account.
error-certificate-not-found = There is no such certificate in your account.
error-viewer = Your role can look at orders but not place, cancel or resend them.
error-internal = The desk hit an internal error. Please try again; the log has the details.
error-csrf = This form has expired or did not come from the console. Reload the page and try again.

state-submitted = Pending CA approval
state-pending_approval = Pending CA approval
state-issued = Complete
state-declined = Declined
state-cancelled = Cancelled
state-failed = Failed

email-state-queued = queued
email-state-forwarded = forwarded to the CA
email-state-sent = sent
email-state-failed = failed

orders-title = SSL orders
orders-new = Order a certificate
orders-filter-status = Status
orders-filter-any = Any status
orders-filter-domain = Domain
orders-sort = Sort
orders-sort-newest = Newest first
orders-sort-oldest = Oldest first
orders-filter-apply = Apply
orders-none-match = No order matches these filters.
orders-clear-filters = Show all orders
orders-empty-title = No certificates ordered yet
orders-empty-body = Create a CSR on your server (for example with openssl req), then order a certificate: the CA checks the domain with its administrator and emails the certificate to the address you give.

col-domain = Domain
col-status = Status
col-ca = CA
col-created = Ordered
col-expires = Expires
col-email = Email
email-send = Send

pager = Pages
pager-first = First page
pager-next = Next page

resend-title = Resend the fulfillment email?
resend-recipient-intro = The certificate and its details will be emailed again to the domain administrator given when it was ordered:
resend-ca-intro = The request goes to
resend-confirm = Resend email
cancel = Cancel
resend-notice = Fulfillment email requested from { $ca }; it will be sent to { $address }.
approval-notice = Approval email requested from { $ca }; it will be sent to { $address }.
resend-rate-limited = This email has been requested too often in the last hour. The next resend is possible in { $wait } (at { $time }).

detail-order = Order
detail-id = Order ID
detail-names = Names
detail-key = Key
detail-validity = Validity
days = days
detail-admin = Domain administrator
detail-approver = Approver
detail-language = Email language
detail-failure = Problem
detail-certificate = Certificate
detail-serial = Serial number
detail-not-before = Valid from
detail-not-after = Valid until
detail-fingerprint = SHA-256 fingerprint
detail-issuer = Issuer
detail-not-stored = The desk keeps only these public details; the certificate itself was emailed to the domain administrator.
detail-actions = Actions
detail-resend-approval = Resend approval email
detail-cancel = Cancel order
detail-cancel-confirm = Cancel this order? The approver's link will stop working.
detail-emails = Emails
detail-no-emails = No email has been sent for this order yet.
req-kind = Email
req-recipient = To
req-state = State
req-when = Requested
req-kind-approval-initial = Approval request
req-kind-approval-resend = Approval request (resent)
req-kind-fulfillment-initial = Certificate
req-kind-fulfillment-resend = Certificate (resent)

new-title = Order a certificate
new-csr = Certificate signing request (CSR)
new-csr-hint = Paste the PEM text or upload the file. It is checked as you paste it.
new-csr-upload = Upload a CSR file
new-check = Check the CSR
csr-subject = Subject
new-days = Validity (days)
new-days-invalid = Enter a whole number of days.
new-approver = Approver
new-approver-hint = The CA asks this address to approve the order. Only the domain's administrative addresses are allowed.
new-approver-choose = Choose an address…
new-admin-name = Administrator's name
new-admin-email = Administrator's email (receives the certificate)
new-language = Language of the emails
new-submit = Place order

nav-certificates = Certificates
certs-title = SSL certificates
certs-import = Import a certificate
certs-import-intro = Certificates ordered through the desk are emailed to their administrator and not kept here. To have the desk hold one, import it with its private key and intermediates; the key is encrypted at rest.
certs-filter-name = Name
certs-filter-expiring = Expiring
certs-filter-any = Any time
certs-within-days = { $count ->
    [one] within 1 day
   *[other] within { $count } days
}
certs-empty-title = No certificates stored yet
certs-empty-body = Import a certificate with its private key and intermediates to keep it here, encrypted, and to be warned before it expires.
certs-notes = Notes
certs-chain = Chain
certs-no-chain = No intermediate certificates.
certs-until = until
certs-download = Download
certs-key-password = Your password, to download the private key
certs-download-key = Download key.pem
certs-save-notes = Save notes
certs-delete = Delete certificate
certs-delete-confirm = Delete this certificate and its private key from the desk? This cannot be undone.
certs-key-encrypted-password = Password of the private key (if it is encrypted)
certs-pkcs12 = Or a PKCS#12 file (.p12, .pfx)
certs-pkcs12-hint = Instead of the three fields above: the file holds the certificate, its key and its intermediates.
certs-pkcs12-password = Password of the PKCS#12 file
certs-allow-expired = Store it even if it has expired
certs-import-submit = Import
certs-days-left = { $count ->
    [one] 1 day left
   *[other] { $count } days left
}
certs-expired-ago = { $count ->
    [0] expired today
    [one] expired 1 day ago
   *[other] expired { $count } days ago
}
certs-notice-imported = The certificate has been imported; its private key is stored encrypted.
certs-notice-saved = The notes have been saved.
certs-notice-deleted = The certificate and its private key have been deleted.
certs-notice-replaced = The certificate has been replaced.
certs-field-certificate = Certificate
certs-hint-certificate = The certificate alone, PEM. Put the intermediates in the chain field.
certs-field-private_key = Private key
certs-hint-private_key = PEM (PKCS#8, PKCS#1 or SEC1). It is encrypted before it is stored.
certs-field-chain = Intermediate certificates
certs-hint-chain = The issuing CA's certificates, PEM, in any order.
certs-replace = Replace certificate
certs-replace-intro = Renewed this certificate? Give the new one here: it takes the old one's place and keeps its notes. Leave the private key empty to keep the stored key; the new certificate must then be for that key.
certs-replace-hint-private_key = Only if the new certificate is for a new key: PEM (PKCS#8, PKCS#1 or SEC1). Leave it empty to keep the stored key.
certs-replace-key-mismatch = This certificate is for a different key than the stored one. If it was issued for a new key, give that private key too.
certs-p12 = PKCS#12 file (.p12) with the private key
certs-p12-password = Your password
certs-p12-export-password = A password for the file
certs-p12-export-hint = At least { $count } characters. You will need it to install the file on the server.
certs-p12-export-password-confirm = The file's password again
certs-download-p12 = Download .p12
certs-p12-wrong-password = This is not your password: type the password you sign in with.
certs-p12-too-short = Choose a password of at least { $count } characters for the file.
certs-p12-mismatch = The two passwords differ: type the same password twice.
