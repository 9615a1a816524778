# Email inviate dalla CA integrata. Numeri di serie, impronte, nomi e nomi
# di file sono inseriti dal codice e non vanno tradotti.

## Comuni

email-greeting = Buongiorno,
email-greeting-name = Gentile { $name },
email-label-order = Ordine

## Email di consegna: il certificato, all'amministratore del dominio

fulfillment-subject = Il tuo certificato SSL per { $domain } è pronto (ordine { $order })
fulfillment-intro = { $ca } ha emesso il certificato SSL/TLS per { $domain }.
fulfillment-label-common-name = Nome comune (CN)
fulfillment-label-names = Nomi
fulfillment-label-serial = Numero di serie
fulfillment-label-valid-from = Valido dal
fulfillment-label-valid-until = Valido fino al
fulfillment-label-fingerprint = Impronta SHA-256
fulfillment-label-issuer = Emittente
fulfillment-label-key-type = Tipo di chiave
fulfillment-attached = In allegato
fulfillment-attached-certificate = solo il certificato
fulfillment-attached-chain = il certificato intermedio (o i certificati intermedi)
fulfillment-attached-fullchain = il certificato seguito dalla catena
fulfillment-install = Installazione
# Al posto di un nome di file nelle righe di nginx e Apache, tra < e >.
fulfillment-private-key = la tua chiave privata
fulfillment-key-note = La chiave privata non ha mai lasciato il tuo server: usa quella con cui hai generato la CSR.
fulfillment-no-copy = Il pannello da cui è stato ordinato questo certificato non ne conserva una copia. Se vuoi che lo custodisca per te, importalo in SSL > Certificati.

## Email di approvazione: la richiesta, all'approvatore del dominio

approval-subject = Approva la richiesta di certificato SSL per { $domain } (ordine { $order })
approval-intro = { $requester } ha richiesto a { $ca } un certificato SSL/TLS per:
approval-recipient = Il certificato verrà inviato a: { $admin }
approval-reason = Ricevi questo messaggio perché risulti amministratore del dominio.
approval-open = Per approvare o rifiutare la richiesta, apri:
approval-link = Esamina la richiesta per approvarla o rifiutarla
approval-expiry = Il link è utilizzabile una sola volta e scade il { $expires }.
approval-unexpected = Se non ti aspettavi questa richiesta, rifiutala o ignora questo messaggio.
