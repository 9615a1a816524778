nav-main = Navigazione principale
nav-security = Sicurezza
nav-ssl = SSL
nav-orders = Ordini
nav-sign-out = Esci

login-title = Accedi a certdesk
login-email = Email
login-password = Password
login-submit = Accedi
login-failed = L'email o la password non sono corrette.

back-to-orders = Torna agli ordini SSL
error-title = Si è verificato un problema
error-not-found = Non trovato
error-forbidden = Non consentito
error-order-not-found = Nel tuo account non esiste questo ordine.
error-certificate-not-found = Nel tuo account non esiste questo certificato.
error-viewer = Il tuo ruolo consente di consultare gli ordini, ma non di effettuarli, annullarli o inviare nuovamente le email.
error-internal = Si è verificato un errore interno. Riprova; i dettagli sono nel log.
error-csrf = Questo modulo è scaduto o non proviene dalla console. Ricarica la pagina e riprova.

state-submitted = In attesa di approvazione della CA
state-pending_approval = In attesa di approvazione della CA
state-issued = Completato
state-declined = Rifiutato
state-cancelled = Annullato
state-failed = Non riuscito

email-state-queued = in coda
email-state-forwarded = inoltrata alla CA
email-state-sent = inviata
email-state-failed = non riuscita

orders-title = Ordini SSL
orders-new = Ordina un certificato
orders-filter-status = Stato
orders-filter-any = Qualsiasi stato
orders-filter-domain = Dominio
orders-sort = Ordina
orders-sort-newest = Più recenti prima
orders-sort-oldest = Meno recenti prima
orders-filter-apply = Applica
orders-none-match = Nessun ordine corrisponde a questi filtri.
orders-clear-filters = Mostra tutti gli ordini
orders-empty-title = Nessun certificato ordinato finora
orders-empty-body = Crea una CSR sul tuo server (ad esempio con openssl req), poi ordina un certificato: la CA verifica il dominio con il suo amministratore e invia il certificato per email all'indirizzo indicato.

col-domain = Dominio
col-status = Stato
col-ca = CA
col-created = Ordinato il
col-expires = Scadenza
col-email = Email
email-send = Invia

pager = Pagine
pager-first = Prima pagina
pager-next = Pagina successiva

resend-title = Inviare nuovamente l'email di consegna?
resend-recipient-intro = Il certificato e i suoi dettagli saranno inviati di nuovo all'amministratore del dominio indicato al momento dell'ordine:
resend-ca-intro = La richiesta viene inoltrata a
resend-confirm = Invia nuovamente email
cancel = Annulla
resend-notice = Email di consegna richiesta a { $ca }; sarà inviata a { $address }.
approval-notice = Email di approvazione richiesta a { $ca }; sarà inviata a { $address }.
resend-rate-limited = Questa email è stata richiesta troppe volte nell'ultima ora. Il prossimo invio sarà possibile tra { $wait } (alle { $time }).

detail-order = Ordine
detail-id = ID ordine
detail-names = Nomi
detail-key = Chiave
detail-validity = Validità
days = giorni
detail-admin = Amministratore del dominio
detail-approver = Approvatore
detail-language = Lingua delle email
detail-failure = Problema
detail-certificate = Certificato
detail-serial = Numero di serie
detail-not-before = Valido dal
detail-not-after = Valido fino al
detail-fingerprint = Impronta SHA-256
detail-issuer = Emittente
detail-not-stored = certdesk conserva solo questi dettagli pubblici; il certificato è stato inviato per email all'amministratore del dominio.
detail-actions = Azioni
detail-resend-approval = Invia nuovamente email di approvazione
detail-cancel = Annulla ordine
detail-cancel-confirm = Annullare questo ordine? Il link dell'approvatore smetterà di funzionare.
detail-emails = Email
detail-no-emails = Per questo ordine non è stata ancora inviata alcuna email.
req-kind = Email
req-recipient = A
req-state = Stato
req-when = Richiesta il
req-kind-approval-initial = Richiesta di approvazione
req-kind-approval-resend = Richiesta di approvazione (reinviata)
req-kind-fulfillment-initial = Certificato
req-kind-fulfillment-resend = Certificato (reinviato)

new-title = Ordina un certificato
new-csr = Richiesta di firma del certificato (CSR)
new-csr-hint = Incolla il testo PEM o carica il file. Viene verificato mentre lo incolli.
new-csr-upload = Carica un file CSR
new-check = Verifica la CSR
csr-subject = Soggetto
new-days = Validità (giorni)
new-days-invalid = Inserisci un numero intero di giorni.
new-approver = Approvatore
new-approver-hint = La CA chiede a questo indirizzo di approvare l'ordine. Sono ammessi solo gli indirizzi amministrativi del dominio.
new-approver-choose = Scegli un indirizzo…
new-admin-name = Nome dell'amministratore
new-admin-email = Email dell'amministratore (riceve il certificato)
new-language = Lingua delle email
new-submit = Effettua l'ordine

nav-certificates = Certificati
certs-title = Certificati SSL
certs-import = Importa un certificato
certs-import-intro = I certificati ordinati tramite certdesk vengono inviati per email al loro amministratore e non sono conservati qui. Per farne conservare uno, importalo con la chiave privata e i certificati intermedi; la chiave viene cifrata.
certs-filter-name = Nome
certs-filter-expiring = Scadenza
certs-filter-any = Qualsiasi
certs-within-days = { $count ->
    [one] entro 1 giorno
   *[other] entro { $count } giorni
}
certs-empty-title = Nessun certificato conservato finora
certs-empty-body = Importa un certificato con la chiave privata e i certificati intermedi per conservarlo qui, cifrato, ed essere avvisato prima che scada.
certs-notes = Note
certs-chain = Catena
certs-no-chain = Nessun certificato intermedio.
certs-until = fino al
certs-download = Scarica
certs-key-password = La tua password, per scaricare la chiave privata
certs-download-key = Scarica key.pem
certs-save-notes = Salva le note
certs-delete = Elimina certificato
certs-delete-confirm = Eliminare questo certificato e la sua chiave privata? L'operazione non può essere annullata.
certs-key-encrypted-password = Password della chiave privata (se è cifrata)
certs-pkcs12 = Oppure un file PKCS#12 (.p12, .pfx)
certs-pkcs12-hint = Al posto dei tre campi sopra: il file contiene il certificato, la chiave e i certificati intermedi.
certs-pkcs12-password = Password del file PKCS#12
certs-allow-expired = Conservalo anche se è scaduto
certs-import-submit = Importa
certs-days-left = { $count ->
    [one] manca 1 giorno
   *[other] mancano { $count } giorni
}
certs-expired-ago = { $count ->
    [0] scaduto oggi
    [one] scaduto da 1 giorno
   *[other] scaduto da { $count } giorni
}
certs-notice-imported = Il certificato è stato importato; la chiave privata è conservata cifrata.
certs-notice-saved = Le note sono state salvate.
certs-notice-deleted = Il certificato e la sua chiave privata sono stati eliminati.
certs-notice-replaced = Il certificato è stato sostituito.
certs-field-certificate = Certificato
certs-hint-certificate = Solo il certificato, in PEM. Inserisci gli intermedi nel campo della catena.
certs-field-private_key = Chiave privata
certs-hint-private_key = PEM (PKCS#8, PKCS#1 o SEC1). Viene cifrata prima di essere conservata.
certs-field-chain = Certificati intermedi
certs-hint-chain = I certificati della CA emittente, in PEM, in qualsiasi ordine.
certs-replace = Sostituisci certificato
certs-replace-intro = Hai rinnovato questo certificato? Inserisci qui quello nuovo: prende il posto del precedente e ne conserva le note. Lascia vuota la chiave privata per mantenere quella conservata; in tal caso il nuovo certificato deve essere per quella chiave.
certs-replace-hint-private_key = Solo se il nuovo certificato è per una nuova chiave: PEM (PKCS#8, PKCS#1 o SEC1). Lasciala vuota per mantenere la chiave conservata.
certs-replace-key-mismatch = Questo certificato è per una chiave diversa da quella conservata. Se è stato emesso per una nuova chiave, inserisci anche quella chiave privata.
certs-p12 = File PKCS#12 (.p12) con la chiave privata
certs-p12-password = La tua password
certs-p12-export-password = Una password per il file
certs-p12-export-hint = Almeno { $count } caratteri. Servirà per installare il file sul server.
certs-p12-export-password-confirm = Di nuovo la password del file
certs-download-p12 = Scarica .p12
certs-p12-wrong-password = Questa non è la tua password: inserisci la password con cui accedi.
certs-p12-too-short = Scegli per il file una password di almeno { $count } caratteri.
certs-p12-mismatch = Le due password sono diverse: inserisci due volte la stessa password.
